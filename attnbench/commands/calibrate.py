"""`attnbench calibrate`: this machine's matmul and copy ceilings, which results report % of."""

from __future__ import annotations

import argparse
import dataclasses
import json

from attnbench.commands import command
from attnbench.commands.common import console
from attnbench.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's default)")
    p.add_argument("--dtype", action="append", help="dtype(s) to measure (default: all the device runs)")
    p.add_argument("--force", action="store_true", help="measure again even if cached")
    p.add_argument("--json", action="store_true", help="print JSON")


@command("calibrate", arguments=arguments, order=60)
def run(args: argparse.Namespace) -> int:
    """measure this machine's matmul and copy ceilings"""
    import pandas as pd
    import torch

    from attnbench.measure.calibrate import ceilings
    from attnbench.report.terminal import print_frame

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    threads = args.threads or torch.get_num_threads()
    default = ("float32", "bfloat16", "float16") + (("float64",) if args.device == "cpu" else ())
    ceil = ceilings(args.device, threads, tuple(args.dtype or default), force=args.force)
    if args.json:
        print(json.dumps(dataclasses.asdict(ceil), indent=2))
        return 0
    rows = [
        (f"matmul {dtype}", f"{rate / 1e12:.3f} TFLOP/s") for dtype, rate in sorted(ceil.matmul_flops.items())
    ]
    rows.append(("memory copy (read + write)", f"{ceil.copy_bytes_per_s / 1e9:.1f} GB/s"))
    print_frame(
        console,
        pd.DataFrame(rows, columns=["measure", "value"]),
        f"ceilings of {ceil.device_name} ({args.device}, {threads} threads)",
        right=lambda column: column == "value",
    )
    console.print(f"[dim]cached (measured {ceil.measured_at}); results report % of these[/]")
    return 0

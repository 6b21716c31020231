"""Compile the chunk kernels for a GPU that is not here and compare Triton's own shared-memory
figure with `attnbench.kernels.budget`'s count, for every registered `linear.*@triton`
configuration at d ∈ {64, 128, 256} with d_dot ≤ 384 (and any --config given).

Triton's NVIDIA backend compiles to PTX and cubin on a CPU-only machine when given a target,
so this needs triton installed but no GPU; it must not run under TRITON_INTERPRET.

    python scripts/shared_memory.py                      # sm_90 (H100/H200), all configurations
    python scripts/shared_memory.py --arch 80 --config 256,128,64   # A100; d_dot, d, chunk
    python scripts/shared_memory.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict

from attnbench.kernels import budget
from attnbench.variants.linear.triton import registered_configs


def compiled_shared(tiles: budget.Tiles, f: int, d: int, *, delta: bool, arch: int) -> dict[str, int]:
    """Triton's `metadata.shared` of each kernel the configuration launches, compiled for sm_`arch`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from attnbench.kernels import delta_chunk, linear_chunk

    target = GPUTarget("cuda", arch, 32)
    options = {"num_warps": tiles.warps, "num_stages": tiles.stages}
    io = "*fp32" if tiles.precision == "ieee" else "*bf16"
    dims = {
        "K": f,
        "V": d,
        "C": tiles.chunk,
        "BK": tiles.block_k,
        "BV": tiles.block_v,
        "PREC": tiles.precision,
    }
    scan = {
        "q_ptr": io,
        "k_ptr": io,
        "x_ptr": "*fp32" if delta else io,
        "w_ptr": "*fp32" if delta else io,
        "o_ptr": io,
        "s_ptr": "*fp32",
        "z_ptr": "*fp32",
        "N": "i32",
        "NP": "i32",
    }
    flags = {"FEATURE": "elu", "SUM_NORM": True, "NORMALIZE": True, "DELTA": delta, "EPS": 1e-6}
    if delta:
        flags.update(FEATURE="identity", SUM_NORM=False)
    consts = {**dims, **flags}
    sources = {"scan": (linear_chunk._chunk_scan_kernel, scan | dict.fromkeys(consts, "constexpr"), consts)}
    if delta:
        ut = {
            "k_ptr": io,
            "v_ptr": io,
            "beta_ptr": io,
            "u_ptr": "*fp32",
            "w_ptr": "*fp32",
            "N": "i32",
            "NP": "i32",
        }
        sources["ut"] = (delta_chunk._ut_kernel, ut | dict.fromkeys(dims, "constexpr"), dims)
    out = {}
    for name, (fn, signature, constexprs) in sources.items():
        kernel = triton.compile(
            ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=target, options=options
        )
        out[name] = kernel.metadata.shared
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability ×10 (90: H100/H200)")
    parser.add_argument("--precision", choices=("ieee", "tf32"), default="ieee", help="ieee: fp32 inputs")
    parser.add_argument("--config", action="append", default=[], help="d_dot,d,chunk (both rules)")
    parser.add_argument("--only", action="store_true", help="the --config ones only")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    configs = [] if args.only else registered_configs()
    for text in args.config:
        f, d, c = (int(x) for x in text.split(","))
        configs += [(f, d, c, False), (f, d, c, True)]
    rows, worst = [], 0.0
    for f, d, chunk, delta in configs:
        tiles = budget.choose_tiles(f, d, chunk, delta=delta, precision=args.precision)
        start = time.perf_counter()
        got = compiled_shared(tiles, f, d, delta=delta, arch=args.arch)
        counted = budget.shared_bytes(tiles, delta=delta)
        row = {"d_dot": f, "d": d, "delta": delta, **asdict(tiles), "counted": counted, "compiled": got}
        rows.append(row)
        worst = max(worst, max(got.values()) / counted)
        rule = "delta" if delta else "sum"
        compiled = ", ".join(f"{k} {v / 1024:.0f}" for k, v in got.items())
        print(
            f"d_dot {f:3d} d {d:3d} C {chunk} {rule:5s} BK {tiles.block_k} BV {tiles.block_v}: "
            f"counted {counted / 1024:5.0f} KiB, Triton {compiled} KiB ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"arch": args.arch, "precision": args.precision, "rows": rows}, fh, indent=1)
    print(f"largest Triton / counted: {worst:.2f}")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""`attnbench list [PATTERN] [--json]`: what can be benchmarked here, and why not."""

from __future__ import annotations

import argparse
import json

from attnbench.commands import command
from attnbench.commands.common import add_plugin_argument, console, load_plugins

DEVICES = ("cpu", "cuda")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="name, glob (softmax.*) or family")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    add_plugin_argument(p)


def describe(v) -> dict:
    """A variant's metadata and whether it runs on each device here (with the reason)."""
    row = {
        "name": v.name,
        "family": v.family,
        "description": v.description,
        "params": dict(v.params),
        "causal": list(v.causal_modes),
        "devices": list(v.devices),
        "dtypes": list(v.dtypes),
        "modes": list(v.modes),
        "decode_state": v.decode_state,
        "flops": v.flops_formula or None,
        "reference": v.reference or None,
    }
    for d in DEVICES:
        a = v.available(d)
        row[f"available_{d}"] = a.ok
        row[f"reason_{d}"] = a.reason or None
    return row


@command("list", arguments=arguments, order=10)
def run(args: argparse.Namespace) -> int:
    """list registered variants and whether they run here"""
    import pandas as pd
    import torch

    from attnbench.registry import REGISTRY
    from attnbench.report.terminal import print_frame

    load_plugins(args.plugin)
    rows = [describe(v) for v in (REGISTRY.select(args.pattern) if args.pattern else REGISTRY.all())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [d for d in DEVICES if d == "cpu" or torch.cuda.is_available()]
    table = pd.DataFrame(
        {
            "name": r["name"],
            "family": r["family"],
            "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—",
            "forms": ", ".join(
                ["causal" if c else "full" for c in r["causal"]]
                + ([f"decode ({r['decode_state']})"] if r["decode_state"] else [])
            ),
            "devices": ", ".join(r["devices"]),
            "dtypes": ", ".join(d.replace("bfloat", "bf").replace("float", "f") for d in r["dtypes"]),
            **{f"runs on {d}": "yes" if r[f"available_{d}"] else f"no: {r[f'reason_{d}']}" for d in shown},
        }
        for r in rows
    )
    availability = lambda text: "green" if text == "yes" else "red" if text.startswith("no: ") else None
    print_frame(
        console,
        table,
        f"attnbench variants (torch {torch.__version__})",
        style=availability,
        right=lambda column: False,
    )
    return 0

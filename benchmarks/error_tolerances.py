"""The largest error each exact variant shows against its float64 oracle, per dtype and mode,
at the lengths suites sweep: the evidence behind `attnbench.measure.accuracy.TOLERANCES`.

Every registered variant that runs here and is not an approximation is built as a sweep
builds it (`runner.execute.prepare`: its default parameters, seeded inputs) and its error is
taken exactly as a run takes it (sampled rows, forward and gradients). No timing: this is
arithmetic, so the machine's load does not matter. Prints the largest error per (dtype, mode)
and its ratio to the tolerance, and writes every measurement as JSON.

    python benchmarks/error_tolerances.py                          # fp32 and bf16, N = 256 and 2048
    python benchmarks/error_tolerances.py --seq-len 256 4096 --dtype float32
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from attnbench import reference
from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.measure.accuracy import tolerances
from attnbench.measure.numerics import error_vs_reference
from attnbench.registry import REGISTRY
from attnbench.runner.execute import prepare


def measure(cls, seq_len: int, dtype: str, mode: str, causal: bool) -> dict | None:
    case = Case(cls.name, (), 1, 4, seq_len, 64, dtype, "cpu", causal, mode, threads=2)
    try:
        work = prepare(case)
    except Unsupported:
        return None
    module = work.module
    oracle = functools.partial(reference.get(cls.reference), **module.oracle_kwargs())
    errors = error_vs_reference(
        lambda q, k, v: module(q, k, v, causal=causal), oracle, work.q, work.k, work.v,
        causal=causal, grads=mode == "fwd+bwd", seed=work.seed,
    )  # fmt: skip
    limits = tolerances(dtype, mode, cls.error_scale)
    return {"variant": cls.name, "seq_len": seq_len, "dtype": dtype, "mode": mode, "causal": causal,
            **errors, "worst_over_tolerance": max(errors[k] / limits[k] for k in limits)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq-len", type=int, nargs="+", default=[256, 2048])
    p.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--variants", default="*", help="names, globs or families (default: every one)")
    p.add_argument("--append", action="store_true", help="add to the output file's measurements")
    p.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/error_tolerances-cpu.json"))
    args = p.parse_args()
    chosen = REGISTRY.select(args.variants)
    exact = [v for v in chosen if v.reference and not v.approximates and v.available("cpu")]
    rows = json.loads(args.output.read_text()) if args.append and args.output.exists() else []
    for cls in exact:
        for n in args.seq_len:
            for dtype in args.dtype:
                for mode in ("fwd", "fwd+bwd"):
                    for causal in (False, True):
                        row = measure(cls, n, dtype, mode, causal)
                        if row:
                            rows.append(row)
                            print(json.dumps(row), flush=True)
    args.output.write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")  # a case a line
    worst: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["dtype"], r["mode"])
        if key not in worst or r["worst_over_tolerance"] > worst[key]["worst_over_tolerance"]:
            worst[key] = r
    for (dtype, mode), r in sorted(worst.items()):
        grad = r.get("grad_rel_err", float("nan"))
        print(f"{dtype:9} {mode:8} worst {r['variant']} N={r['seq_len']}: rel {r['rel_err']:.2e}, "
              f"grad {grad:.2e}, {r['worst_over_tolerance']:.3f} of the tolerance")  # fmt: skip


if __name__ == "__main__":
    main()

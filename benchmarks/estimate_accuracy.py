"""How close `attnbench run --dry-run`'s estimate comes to the time the run takes.

Estimates a suite (default: the CI suite) from FLOPs and this machine's calibration, with no
earlier results, then runs it (subprocess executor, as `attnbench run` does) and prints the
estimated and measured wall time of the whole sweep and the spread of the per-case ratio.
The documented factor (docs/reading-results.md) comes from this script's output, committed in
benchmarks/results/estimate_accuracy-cpu.json.

    python benchmarks/estimate_accuracy.py                  # suites/ci.toml
    python benchmarks/estimate_accuracy.py --suite lowrank
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from attnbench.env import machine_env
from attnbench.measure.calibrate import ceilings
from attnbench.results.store import read_records
from attnbench.runner.plan import make_plan
from attnbench.runner.sweep import run_sweep
from attnbench.suites import load_suite


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="ci")
    p.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results/estimate_accuracy-cpu.json"))
    args = p.parse_args()
    suite = load_suite(args.suite)
    cases = suite.cases()
    for device, threads, dtype in sorted({(c.device, c.threads, c.dtype) for c in cases}):
        ceilings(device, threads, (dtype,), force=True)  # this minute's load, as the run will meet
    plan = make_plan(cases, suite.settings, earlier={}, calibrate=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        start = time.perf_counter()
        run_sweep(suite, plan.runnable, out=out)
        measured = time.perf_counter() - start
        records = read_records(out, warn=print)
    walls = {r["case_id"]: r["wall_s"] for r in records}
    variant = {r["case_id"]: r["label"] for r in records}
    ratios = sorted(walls[c] / plan.seconds[c] for c in plan.seconds if walls.get(c))
    by_variant: dict[str, list[float]] = {}
    for c in plan.seconds:
        if walls.get(c):
            by_variant.setdefault(variant[c], []).append(round(walls[c] / plan.seconds[c], 2))
    result = {
        "suite": suite.name,
        "cases": len(plan.runnable),
        "estimated_s": round(plan.estimate_s, 1),
        "measured_s": round(measured, 1),
        "ratio_total": round(measured / plan.estimate_s, 3),
        "ratio_per_case": {
            "min": round(ratios[0], 3),
            "median": round(statistics.median(ratios), 3),
            "max": round(ratios[-1], 3),
        },
        "ratio_by_variant": by_variant,
        "sum_of_case_wall_s": round(sum(walls.values()), 1),
        "env": machine_env(),
    }
    print(json.dumps(result, indent=1))
    args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Does the subprocess worker's memory stay flat over a long sweep?

Runs many small cases, in ascending size (the order that grew the worker from 387 to 997 MB
over 80 cases in issue 16), through one `SubprocessExecutor` with memory measured, and samples
the worker's resident set size (VmRSS from /proc) after every case. Reports the growth per
case (the least-squares slope of RSS against the case index), the first and last samples, the
largest, and how many workers the sweep started (a recycled worker starts a new one).

    python benchmarks/worker_soak.py [--cases 500] [--metrics memory] [--order ascending]
        [--json benchmarks/results/worker_soak-after.json]

Linux only (reads /proc/<pid>/status).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from rich.console import Console

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.executors import SubprocessExecutor

VARIANTS = ("softmax.naive", "softmax.sdpa", "linear.elu")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def soak_cases(count: int, order: str) -> list[Case]:
    """Small cases (peaks of 1 to 25 MiB; H=8, D=64): N grows by 1 every case, from 128."""
    cases = [Case(VARIANTS[i % len(VARIANTS)], (), 1, 8, 128 + i, 64, threads=1) for i in range(count)]
    return cases if order == "ascending" else cases[::-1]


def slope(ys: list[float]) -> float:
    """Least-squares slope of ys against their index."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sxx if sxx else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--metrics", default="memory", help="comma-separated metric groups")
    parser.add_argument("--order", choices=["ascending", "descending"], default="ascending")
    parser.add_argument("--json", type=Path, help="also write the samples and summary here")
    args = parser.parse_args()
    metrics = tuple(m for m in args.metrics.split(",") if m)
    settings = MeasureSettings(metrics=metrics, warmup=1, min_run_time=0.01, min_samples=3, calibrate=False)
    executor = SubprocessExecutor(settings, timeout_s=300)
    samples: list[float] = []
    pids: list[int] = []
    start = time.perf_counter()
    try:
        for case in soak_cases(args.cases, args.order):
            outcome = executor.run(case)
            if outcome.status != "ok":
                raise SystemExit(f"{case}: {outcome.status} {outcome.error}")
            pid = executor._proc.pid
            pids.append(pid)
            samples.append(rss_mib(pid))
    finally:
        executor.close()
    summary = {
        "cases": args.cases,
        "order": args.order,
        "metrics": list(metrics),
        "worker_starts": executor.starts,
        "rss_first_mib": round(samples[0], 1),
        "rss_last_mib": round(samples[-1], 1),
        "rss_max_mib": round(max(samples), 1),
        "growth_mib_per_case": round(slope(samples), 3),
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    Console().print(
        f"{args.cases} {args.order} cases ({', '.join(metrics) or 'no metrics'}), "
        f"{executor.starts} worker(s): RSS {summary['rss_first_mib']} → {summary['rss_last_mib']} MiB "
        f"(max {summary['rss_max_mib']}), {summary['growth_mib_per_case']} MiB per case, "
        f"{summary['wall_s']} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rss = json.dumps([round(s, 1) for s in samples])  # one line, after the summary
        args.json.write_text(json.dumps(summary, indent=1)[:-2] + f',\n "rss_mib": {rss}\n}}\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What does running each case in the subprocess worker cost, against running it inline?

The same cases run through both executors, alternating, in one process. The cases are kept
tiny and measure nothing (build, inputs, one call), so what is left is the executor's own
cost: the per-case overhead is the difference in wall time divided by the number of cases.
The worker's one-off start (spawn, import torch, discover variants) is reported separately.

    python benchmarks/isolation_overhead.py [--cases 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from rich.console import Console

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.executors import InlineExecutor, SubprocessExecutor


def wall(executor, cases: list[Case]) -> float:
    start = time.perf_counter()
    for case in cases:
        assert executor.run(case).status == "ok"
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = MeasureSettings(metrics=(), warmup=0, calibrate=False)
    cases = [Case("softmax.sdpa", (), 1, 4, 64 + i, 32, threads=2) for i in range(args.cases)]

    inline = InlineExecutor(settings)
    isolated = SubprocessExecutor(settings, timeout_s=120)
    start = time.perf_counter()
    isolated._start()
    startup = time.perf_counter() - start
    wall(inline, cases[:3])  # warm both paths
    wall(isolated, cases[:3])
    overheads = []
    for _ in range(args.rounds):
        t_inline = wall(inline, cases)
        t_isolated = wall(isolated, cases)
        overheads.append((t_isolated - t_inline) / len(cases))
    isolated.close()
    per_case = statistics.median(overheads)
    Console().print(
        f"worker start-up (once per sweep, and after a crash or timeout): {startup:.2f} s\n"
        f"isolation overhead per case: {per_case * 1e3:.1f} ms "
        f"(median of {args.rounds} rounds of {len(cases)} cases; rounds: "
        f"{', '.join(f'{o * 1e3:.1f}' for o in overheads)} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

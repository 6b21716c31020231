"""Where do the 2× swings of a timing come from? Three suspects, each measured with the noise
detector's own counters (attnbench/measure/noise.py):

1. **The allocator.** The same cases in fresh processes with glibc's trim threshold at 0 (what
   the 4 GiB setting wrapped to in mallopt's C int: the heap top trimmed on every free) and at
   the largest C int: page faults per timed call, and the median.
2. **Neighbours.** The same small cases at 1 and at all of this machine's threads, alone and
   beside spinning processes (one, then one per core): the median, how many cores the others
   took, involuntary context switches, the flags.
3. **The machine.** Whether a DAMON pageout scheme runs, what it may evict (its filters) and how
   long memory must sit idle first, the swap, the frequency governor.
4. **The Timer's block size.** One small case timed again and again in one warm process with
   `min_run_time` 0.05, 0.3 and 1 s (the Timer's blocks grow with it): how far its medians
   spread (max/min) at each.

    python benchmarks/noise_sources.py [--json benchmarks/results/noise_sources.json]

Counts (faults, context switches) do not depend on how busy the machine is; medians do, so
part 2 says how busy it was before it started. Linux only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnbench.cases import Case  # noqa: E402
from attnbench.measure import noise  # noqa: E402
from attnbench.measure.settings import MeasureSettings  # noqa: E402

SETTINGS = MeasureSettings(metrics=("time",), min_run_time=0.3, calibrate=False)
ALLOCATOR_CASES = [
    Case("softmax.sdpa", (), 1, 8, 2048, 64, causal=True, threads=2),
    Case("linear.elu", (), 1, 8, 8192, 64, causal=True, threads=2),
    Case("linear.favor", (), 1, 8, 8192, 64, causal=True, threads=2),
]
NEIGHBOUR_SEQ_LENS = (128, 512)  # softmax.sdpa, B=1, H=4, D=64, full, fwd
KEEP = ("latency_ms", "faults_per_call", "ctx_involuntary", "other_cores", "timed_calls")


def _summary(case: Case, outcome) -> dict[str, Any]:
    kept = {k: outcome.metrics.get(k) for k in KEEP}
    return {"case": str(case), "status": outcome.status, **kept, "flags": outcome.flags}


def _allocator_child(trim: int | None, queue) -> None:
    from attnbench.measure import allocator
    from attnbench.registry import REGISTRY
    from attnbench.runner.execute import execute

    REGISTRY.discover()
    allocator.steady_cpu_allocator()
    if trim is not None:  # the old, wrapped setting
        allocator._glibc().mallopt(allocator.M_TRIM_THRESHOLD, trim)
    queue.put([_summary(c, execute(c, SETTINGS)) for c in ALLOCATOR_CASES])


def allocator_part() -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for name, trim in (("trim_threshold=0 (before)", 0), ("trim_threshold=2 GiB (now)", None)):
        queue = ctx.Queue()
        proc = ctx.Process(target=_allocator_child, args=(trim, queue))
        proc.start()
        out[name] = queue.get()
        proc.join()
    return out


def spin() -> None:
    while True:
        pass


def neighbours_part() -> dict[str, Any]:
    from attnbench.registry import REGISTRY
    from attnbench.runner.execute import execute

    REGISTRY.discover()
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for spinners in (0, 1, noise.cores()):
        procs = [ctx.Process(target=spin, daemon=True) for _ in range(spinners)]
        for p in procs:
            p.start()
        time.sleep(0.5)
        try:
            for threads in sorted({1, noise.cores()}):
                for n in NEIGHBOUR_SEQ_LENS:
                    case = Case("softmax.sdpa", (), 1, 4, n, 64, threads=threads)
                    rows.append(
                        {"spinners": spinners, "threads": threads, **_summary(case, execute(case, SETTINGS))}
                    )
        finally:
            for p in procs:
                p.kill()
                p.join()
    return {"others_busy_before": noise.others_busy(), "rows": rows}


def _text(path: Path) -> str:
    return path.read_text().strip() if path.exists() else "?"


def machine_part() -> dict[str, Any]:
    filters, schemes = [], []
    for path in sorted(Path(noise.DAMON_ADMIN).glob("*/contexts/*/schemes/*/ops_filters/*/type")):
        filters.append(f"{path.read_text().strip()}: allow={_text(path.parent / 'allow')}")
    for scheme in sorted(Path(noise.DAMON_ADMIN).glob("*/contexts/*/schemes/[0-9]*")):
        context = scheme.parent.parent
        aggr_us = _text(context / "monitoring_attrs/intervals/aggr_us")
        age = _text(scheme / "access_pattern/age/min")
        idle = int(age) * int(aggr_us) / 1e6 if age.isdigit() and aggr_us.isdigit() else None
        scheme_info = {"action": _text(scheme / "action"), "operations": _text(context / "operations")}
        scheme_info |= {"min_idle_s": idle, "quota_bytes_per_s": _text(scheme / "quotas/bytes")}
        schemes.append(scheme_info)
    swap = [line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("SwapTotal")]
    return {**noise.machine_noise_env(), "damon_schemes": schemes, "damon_filters": filters, "swap": swap}


def timer_part(times: int = 5) -> dict[str, Any]:
    """The same warm case timed `times` times at each min_run_time: the spread of its medians."""
    from attnbench.registry import REGISTRY
    from attnbench.runner.execute import execute

    REGISTRY.discover()
    case = Case("softmax.sdpa", (), 1, 4, 512, 64, threads=1)
    out = {"case": str(case), "others_busy_before": noise.others_busy()}
    for min_run_time in (0.05, 0.3, 1.0):
        settings = dataclasses.replace(SETTINGS, min_run_time=min_run_time)
        medians = [execute(case, settings).metrics.get("latency_ms") for _ in range(times)]
        ok = [m for m in medians if m]
        spread = max(ok) / min(ok) if ok else None
        out[f"min_run_time={min_run_time}"] = {"medians_ms": medians, "max_over_min": spread}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from attnbench.measure.allocator import steady_cpu_allocator

    steady_cpu_allocator()
    result = {
        "machine": machine_part(),
        "allocator": allocator_part(),
        "timer": timer_part(),
        "neighbours": neighbours_part(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

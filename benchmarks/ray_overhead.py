"""What does running a sweep's cases through the Ray executor cost, against the subprocess one?

The cases of suites/ci.toml (72: every CPU softmax path at two lengths, masks and modes, those
this machine cannot run included) run through both executors, alternating, in one process, on
a local Ray instance. They measure nothing (build, inputs, one call), so what is left is each
executor's own cost. Each case runs through one executor and at once through the other (the
order alternating), so the two walls of a pair see the same load; the per-case overhead is
the median of the pairs' differences, with its quartiles, over all cases and apart for the
cases that run here (`ok`: the round trip, plus whatever Ray's own processes take from the
case while it runs, also as the ratio of the two walls) and those recorded without running
(`unsupported`: the round trip alone). The cases ask for 2 threads, as the
suite does, so on a 2-CPU instance Ray runs one at a time, like the subprocess executor: the
difference is the round trip through Ray, not parallelism. The one-off costs (starting Ray,
the first actor and its worker) are reported apart. The load average is recorded: on a
shared machine it is most of the spread.

    python benchmarks/ray_overhead.py [--rounds 5] [--cpus 2] [--out benchmarks/results/ray_overhead-cpu.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

from attnbench.cases import Case
from attnbench.env import cpu_model
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.executors import SubprocessExecutor
from attnbench.suites import load_suite

ONE_CALL = MeasureSettings(metrics=(), warmup=0, calibrate=False)


def wall(executor, case: Case) -> tuple[float, str]:
    start = time.perf_counter()
    status = executor.run(case).status
    return time.perf_counter() - start, status


def quartiles(values: list[float], scale: float = 1e3, digits: int = 2) -> list[float]:
    """First quartile, median and third quartile (in ms by default); [] for fewer than two."""
    if len(values) < 2:
        return []
    q = statistics.quantiles(values, n=4)
    return [round(v * scale, digits) for v in (q[0], statistics.median(values), q[2])]


def ratios(pairs: list[tuple[float, float]]) -> list[float]:
    """Quartiles of Ray's wall over the subprocess executor's, pair by pair."""
    return quartiles([r / s for s, r in pairs], scale=1, digits=3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray_overhead-cpu.json"))
    args = parser.parse_args()

    import ray

    from attnbench.runner.ray_executor import RayExecutor

    cases = load_suite("ci").cases()
    load_before = os.getloadavg()
    sub = SubprocessExecutor(ONE_CALL, timeout_s=120)
    start = time.perf_counter()
    sub.run(cases[0])
    sub_first = time.perf_counter() - start
    start = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=args.cpus,
        include_dashboard=False,
        object_store_memory=128 << 20,
        log_to_driver=False,
    )
    ray_init = time.perf_counter() - start
    on_ray = RayExecutor(ONE_CALL, timeout_s=120)
    start = time.perf_counter()
    on_ray.run(cases[0])
    ray_first = time.perf_counter() - start

    differences, sub_walls, ray_walls, ran = [], [], [], set()
    by_status: dict[str, list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for i, case in enumerate(cases):
            first, second = (sub, on_ray) if (r + i) % 2 == 0 else (on_ray, sub)
            (t_first, s_first), (t_second, s_second) = wall(first, case), wall(second, case)
            assert s_first == s_second, f"the two executors disagree on {case}"
            if s_first == "ok":
                ran.add(case.id)
            t_sub, t_ray = (t_first, t_second) if first is sub else (t_second, t_first)
            sub_walls.append(t_sub)
            ray_walls.append(t_ray)
            differences.append(t_ray - t_sub)
            by_status.setdefault("ok" if s_first == "ok" else "not_run", []).append((t_sub, t_ray))
    workers = sub.starts, on_ray.starts
    sub.close()
    on_ray.close()
    ray.shutdown()
    load_after = os.getloadavg()

    result = {
        "suite": "ci",
        "cases": len(cases),
        "ran_here": len(ran),  # the rest are `unsupported` here (CUDA-only paths, no CPU backward)
        "settings": dataclasses.asdict(ONE_CALL),
        "ray_cpus": args.cpus,
        "ray": ray.__version__,
        "pairs": len(differences),
        "overhead_ms_per_case_q25_median_q75": quartiles(differences),
        "overhead_ms_per_case_mean": round(statistics.mean(differences) * 1e3, 2),
        "overhead_ms_q25_median_q75_by_status": {
            status: quartiles([r - s for s, r in pairs]) for status, pairs in sorted(by_status.items())
        },
        "ray_over_subprocess_wall_ratio_q25_median_q75_ok": ratios(by_status.get("ok", [])),
        "subprocess_ms_per_case_q25_median_q75": quartiles(sub_walls),
        "ray_ms_per_case_q25_median_q75": quartiles(ray_walls),
        "worker_starts_subprocess_ray": list(workers),
        "ray_init_s": round(ray_init, 2),
        "ray_first_case_s": round(ray_first, 2),  # its actor and the actor's worker start
        "subprocess_first_case_s": round(sub_first, 2),  # the worker starts
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    q25, overhead, q75 = result["overhead_ms_per_case_q25_median_q75"]
    Console().print(
        f"{len(cases)} cases of suites/ci.toml ({len(ran)} run here), one call each, {args.rounds} rounds\n"
        f"subprocess {result['subprocess_ms_per_case_q25_median_q75'][1]:.1f} ms a case, "
        f"Ray {result['ray_ms_per_case_q25_median_q75'][1]:.1f} ms: Ray adds {overhead:.1f} ms a case "
        f"(quartiles of {len(differences)} pairs {q25:.1f} … {q75:.1f} ms, mean "
        f"{result['overhead_ms_per_case_mean']:.1f} ms)\n"
        f"by status (quartiles, ms): {result['overhead_ms_q25_median_q75_by_status']}; cases that ran "
        f"take {result['ray_over_subprocess_wall_ratio_q25_median_q75_ok']} × as long on Ray\n"
        f"once per sweep: ray.init {ray_init:.1f} s, first case on Ray {ray_first:.1f} s "
        f"(subprocess: {sub_first:.1f} s)\n"
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} · {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

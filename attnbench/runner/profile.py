"""Profile a case right after the harness measured it, on the same warm workload: the trace
and operator breakdown of its call, its memory timeline, and the measurement they are checked
against (see `attnbench.results.profiles` for the folder it writes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from attnbench.cases import Case
from attnbench.env import machine_env
from attnbench.measure.memory_timeline import memory_timeline
from attnbench.measure.profile import (
    TRACE_TOLERANCE,
    Call,
    Trace,
    op_breakdown,
    top_level_breakdown,
    trace_calls,
)
from attnbench.results.profiles import SNAPSHOT, TRACE, folder_name, save_profile

# the measurement a profile is checked against, and its place on the roofline
MEASURED = ("latency_ms", "latency_q25_ms", "latency_q75_ms", "latency_samples", "timer", "peak_mem_bytes",
            "flops", "min_bytes", "peak_flops", "peak_bw")  # fmt: skip


def write_profile(case: Case, work: Call, metrics: dict[str, Any], root: Path, *, repeat: int = 3) -> Path:
    """Profile `work` (the case's warm workload) into `root/<label>-<shape>/`; `metrics` are
    the case's measurements so far, which the profile is checked against. Returns the folder."""
    folder = Path(root) / folder_name(case)
    folder.mkdir(parents=True, exist_ok=True)
    work.run()  # warm again: the error check since the timing ran other code
    trace = trace_calls(work, case.device, repeat=repeat)
    trace.export(folder / TRACE)
    breakdowns = {
        "op": op_breakdown(trace),
        "shape": op_breakdown(trace, by_shape=True),
        "top": top_level_breakdown(trace),
    }
    work.reset()
    snapshot = folder / SNAPSHOT if case.device == "cuda" else None
    timeline = memory_timeline(work.call, case.device, snapshot=snapshot)
    env = machine_env()
    summary = {
        "label": case.label,
        "case_id": case.id,
        "case": case.to_dict(),
        "measured": {key: metrics[key] for key in MEASURED if key in metrics},
        "trace": trace_check(trace, metrics.get("latency_ms")),
        "memory": {
            **timeline.summary(),
            "harness_peak_bytes": metrics.get("peak_mem_bytes"),
            "snapshot": SNAPSHOT if snapshot else None,
        },
        "env": {key: env[key] for key in ("torch", "git_revision", "git_dirty", "hostname", "cpu_model")},
    }
    return save_profile(folder, summary, breakdowns, timeline.to_frame())


def trace_check(trace: Trace, median_ms: float | None) -> dict[str, Any]:
    """The traced calls' wall time against the timed median: their ratio and whether it is
    within `TRACE_TOLERANCE` (profiler overhead per operator, and the machine's noise)."""
    ratio = trace.wall_ms / median_ms if median_ms else math.nan
    return {
        "file": TRACE,
        "wall_ms": trace.wall_ms,
        "walls_ms": list(trace.walls_ms),
        "median_ms": median_ms,
        "ratio": ratio,
        "tolerance": TRACE_TOLERANCE,
        "within": bool(abs(ratio - 1) <= TRACE_TOLERANCE) if median_ms else None,
    }

"""What a results record must hold, by type: checked when a file is read, so a line that is
valid JSON but not a usable record (`"case": "str"`, a latency of `"fast"`, edited by hand or
written by another tool) is skipped with a warning naming it, like a line that is not JSON,
instead of failing a table, a figure or the gate later with a traceback.

Required: `case_id`, `status` (one of STATUSES) and `case`. Everything else may be absent (a
hand-made record with only some case fields still shows), but what is present must have the
type attnbench writes. Metrics are free-form (tasks record strings, lists and tables), except
the numbers every table, figure and gate computes with, which must be finite numbers.
"""

from __future__ import annotations

import math
from typing import Any

# `inaccurate`: measured, but its error against its oracle is above the tolerance
# (attnbench.measure.accuracy); its metrics are kept
STATUSES = ("ok", "inaccurate", "oom", "timeout", "crash", "unsupported", "error")

NUMBER = (int, float)
TOP_FIELDS: dict[str, type | tuple[type, ...]] = {
    "case_id": str,
    "status": str,
    "case": dict,
    "label": str,
    "suite": str,
    "error": str,
    "metrics": dict,
    "flags": list,
    "env": dict,
    "wall_s": NUMBER,
    "round": int,
}
REQUIRED = ("case_id", "status", "case")
CASE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "variant": str,
    "params": dict,
    "batch": int,
    "heads": int,
    "seq_len": int,
    "d_head": int,
    "dtype": str,
    "device": str,
    "causal": bool,
    "mode": str,
    "threads": int,
    "task": dict,
}
# the environment a table or report shows (`env` may hold more, of any type)
ENV_COLUMNS = ("device_name", "torch", "git_revision", "hostname")
# what about the machine can disturb timings (attnbench/measure/noise.py), any type
NOISE_ENV_COLUMNS = ("damon_pageout", "cpu_governor")
# the metrics `execute` records as numbers, and that tables, figures and the gate compute with
NUMERIC_METRICS = (
    "latency_ms",
    "latency_q25_ms",
    "latency_q75_ms",
    "latency_iqr_ms",
    "latency_samples",
    "tokens_per_s",
    "flops",
    "tflops",
    "pct_peak_flops",
    "pct_peak_bw",
    "peak_mem_bytes",
    "rel_err",
    "grad_rel_err",
    "max_abs_err",
    "d_dot",
    "cache_bytes",
    "density",
    "compiles",
    "threads_used",
    "faults_minor",
    "faults_major",
    "faults_per_call",
    "ctx_involuntary",
    "other_cpu_s",
    "other_cores",
    "steal_s",
    "timed_calls",
    "timed_wall_s",
)


def _is(value: Any, expected: type | tuple[type, ...]) -> bool:
    """isinstance, where JSON's true/false is no number, and numbers are finite."""
    if isinstance(value, bool):
        return expected is bool
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, expected)


TYPE_NAMES = {str: "a string", dict: "an object", list: "a list", int: "an integer", bool: "true/false"}


def _name(expected: type | tuple[type, ...]) -> str:
    return "a number" if expected == NUMBER else TYPE_NAMES[expected]


def record_problem(rec: Any) -> str | None:
    """Why `rec` is not a usable results record, naming the first field that is wrong; None
    if it is one."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        return f"no {missing[0]!r}"
    for key, expected in TOP_FIELDS.items():
        value = rec.get(key)
        if value is not None and not _is(value, expected):
            return f"{key} is {value!r:.40}, not {_name(expected)}"
        if value is None and key in REQUIRED:
            return f"{key} is null"
    if not (rec.get("label") or rec["case"].get("variant")):
        return "no label and no case.variant to name it by"
    if isinstance(rec.get("round"), int) and rec["round"] < 0:
        return f"round is {rec['round']}, not a round (0 or more)"
    if rec["status"] not in STATUSES:
        return f"status {rec['status']!r:.40} is none of {', '.join(STATUSES)}"
    for key, expected in CASE_FIELDS.items():
        value = rec["case"].get(key)
        if key in rec["case"] and not _is(value, expected):
            return f"case.{key} is {value!r:.40}, not {_name(expected)}"
        if expected is int and key in rec["case"] and value < 1:  # a size or a count
            return f"case.{key} is {value}, not a positive integer"
    for key, value in (rec.get("metrics") or {}).items():
        if key in NUMERIC_METRICS and value is not None and not _is(value, NUMBER):
            return f"metrics.{key} is {value!r:.40}, not a finite number"
    if not all(isinstance(f, str) for f in rec.get("flags") or ()):
        return "flags holds something other than strings"
    for key in ENV_COLUMNS:
        value = (rec.get("env") or {}).get(key)
        if value is not None and not isinstance(value, str):
            return f"env.{key} is {value!r:.40}, not a string"
    return None

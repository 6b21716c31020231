"""Results as a pandas DataFrame: one row per case, case fields and metrics as columns (a
case's replicates, one record per round, read as one row: attnbench/results/replicates.py)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.errors import UserError
from attnbench.results.replicates import REFERENCE, add_reference_ratios, combine
from attnbench.results.schema import CASE_FIELDS, ENV_COLUMNS, NOISE_ENV_COLUMNS
from attnbench.results.store import read_records

CASE_COLUMNS = [k for k in CASE_FIELDS if k != "task"]  # task parameters are `task.<name>` columns
# every column that is not a metric
RECORD_COLUMNS = [
    "case_id",
    "label",
    "suite",
    "status",
    "error",
    *CASE_COLUMNS,
    "flags",
    "wall_s",
    *ENV_COLUMNS,
    "run",  # the file a row comes from, when several are read as runs (results.runs)
    *NOISE_ENV_COLUMNS,
]


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    case = rec["case"]
    row: dict[str, Any] = {
        "case_id": rec["case_id"],
        "label": rec.get("label") or case.get("variant"),
        "suite": rec.get("suite"),
        "status": rec["status"],
        "error": rec.get("error"),
    }
    row.update({k: case.get(k) for k in CASE_COLUMNS})
    row["params"] = ",".join(f"{k}={v}" for k, v in sorted((case.get("params") or {}).items()))
    for k, v in (case.get("task") or {}).items():
        row[f"task.{k}"] = v
    for k, v in (rec.get("metrics") or {}).items():
        # a list (a task's per-length results, a curve) is one object cell; a metric never
        # takes the place of a column of the record
        if not isinstance(v, dict) and k not in RECORD_COLUMNS:
            row[k] = v
    row["flags"] = ",".join(rec.get("flags") or [])
    row["wall_s"] = rec.get("wall_s")
    env = rec.get("env") or {}
    row.update({k: env.get(k) for k in (*ENV_COLUMNS, *NOISE_ENV_COLUMNS)})
    row.update(rec.get("_replicates") or {})
    return row


def task_column(df: pd.DataFrame) -> pd.Series:
    """Each row's task name, None for benchmark rows (aligned with `df`)."""
    if "task.name" in df:
        return df["task.name"].where(df["task.name"].notna(), None)
    return pd.Series([None] * len(df), index=df.index, dtype=object)


def relative_spread(row: pd.Series) -> float:
    """Half the latency's interquartile range relative to its median (0 when not recorded)."""
    iqr, median = row.get("latency_iqr_ms"), row.get("latency_ms")
    if iqr is None or median is None or pd.isna(iqr) or pd.isna(median) or not median:
        return 0.0
    return 0.5 * float(iqr) / float(median)


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The columns of `df` that hold scalar metrics (not the case, the task or the environment)."""
    fixed = set(RECORD_COLUMNS)
    return [
        c
        for c in df.columns
        if c not in fixed
        and not c.startswith("task.")
        and not df[c].map(lambda v: isinstance(v, (list, dict))).any()
    ]


def load_results(
    *paths: str | Path, on_warning: Callable[[str], None] | None = None, reference: str = REFERENCE
) -> pd.DataFrame:
    """Read one or more results files (JSON lines) into a DataFrame, one row per case.

    Unreadable lines are skipped with a warning (`warnings.warn`, or `on_warning`); the rest
    are kept. The last record of a (case id, round) wins, so a file extended by `--resume`
    reads as one sweep; a case's rounds are combined into one row with the interval of its
    median, and of its ratio to `reference` at the same shape.
    """
    if not paths:
        raise UserError("load_results needs at least one results file")
    say = on_warning or (lambda msg: warnings.warn(msg, stacklevel=3))
    cases: dict[str, dict[int, dict[str, Any]]] = {}
    for path in paths:
        for rec in read_records(path, warn=say):
            cases.setdefault(rec["case_id"], {})[rec.get("round") or 0] = rec
    rows = [flatten(combine([rounds[r] for r in sorted(rounds)])) for rounds in cases.values()]
    return add_reference_ratios(pd.DataFrame(rows), reference)

"""Several results files read together as runs: every measurement kept (a `run` column names
its file) rather than one silently winning, the cases two runs measured differently beyond
their spread, and, when asked, one row per case aggregated over the runs.

Two measurements of a case disagree when their medians differ by more than `DISAGREE` and by
more than `NOISE` times their combined spread (half the IQR relative to the median, added in
quadrature) — the rule of the regression gate, where a run is compared with another.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from attnbench.results.frame import load_results, metric_columns, relative_spread

DISAGREE = 0.10  # relative difference of two medians ...
NOISE = 3.0  # ... beyond this many combined spreads
COMBINE = ("median", "min", "last")


def load_runs(paths: list[Path], on_warning: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The records of every file, each row with the `run` (file) it comes from when some case
    is in more than one file; files that share no case (shards of one sweep) read as one."""
    frames = []
    for path in paths:
        df = load_results(path, on_warning=on_warning)
        if not df.empty:
            frames.append(df.assign(run=run_name(path, paths)))
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    if not df["case_id"].duplicated().any():
        return df.drop(columns="run")
    return df


def run_name(path: Path, paths: list[Path]) -> str:
    """The file's name, or its path where two files share a name."""
    same = [p for p in paths if p.name == path.name]
    return str(path) if len(same) > 1 else path.name


def disagreements(df: pd.DataFrame) -> list[str]:
    """One line per case measured in several runs whose latencies disagree beyond their spread."""
    if "run" not in df or "latency_ms" not in df:
        return []
    out = []
    ok = df[(df["status"] == "ok") & df["latency_ms"].notna()]
    for _, group in ok.groupby("case_id", sort=False):
        if len(group) < 2:
            continue
        fast, slow = group.loc[group["latency_ms"].idxmin()], group.loc[group["latency_ms"].idxmax()]
        rel = slow["latency_ms"] / fast["latency_ms"] - 1
        band = max(DISAGREE, NOISE * math.hypot(relative_spread(fast), relative_spread(slow)))
        if rel > band:
            out.append(
                f"{fast['label']} N={fast['seq_len']} {fast['mode']}{' causal' if fast['causal'] else ''}: "
                f"{slow['latency_ms']:.3g} ms in {slow['run']} against {fast['latency_ms']:.3g} ms in "
                f"{fast['run']} ({rel:.0%} apart, beyond their spread)"
            )
    return out


def combine(df: pd.DataFrame, how: str) -> pd.DataFrame:
    """One row per case: `median` or `min` of each numeric metric over the runs where it is
    `ok` (the other columns from its last run), or the `last` run's row."""
    if "run" not in df:
        return df
    if how == "last":
        return df.drop_duplicates("case_id", keep="last").drop(columns="run")
    numeric = [c for c in metric_columns(df) if pd.api.types.is_numeric_dtype(df[c])]
    rows = []
    for _, group in df.groupby("case_id", sort=False):
        row = group.iloc[-1].copy()
        ok = group[group["status"] == "ok"]
        if len(ok):
            row = ok.iloc[-1].copy()
            for column in numeric:
                row[column] = getattr(ok[column], how)()
        rows.append(row)
    return pd.DataFrame(rows).drop(columns="run").reset_index(drop=True)

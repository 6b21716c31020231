"""Several metrics in one table, and each case's ratio to a baseline variant measured at the
same shape (in the same run): "throughput and memory against SDPA" in one `show`.

Rows are cases (label, the axes that vary, N); a column per metric, and with a baseline a
ratio per metric beside it. Latency's ratio is the speed-up, baseline ÷ case (above 1: faster
than the baseline), with its spread (the two medians' relative half-IQRs in quadrature);
every other metric's is case ÷ baseline (memory 0.5: half the baseline's).
"""

from __future__ import annotations

import math

import pandas as pd

from attnbench.errors import UserError, did_you_mean
from attnbench.report import compare
from attnbench.report.table import MEASURED, Metric, hide_unsupported, metric, row_axes, status_cell
from attnbench.results.frame import relative_spread

SHAPE = [*compare.SHAPE, "run"]  # a ratio is taken within one run


def metric_names(text: str) -> list[Metric]:
    """`latency_ms,peak_mem_bytes` -> their Metrics (an unknown name is a UserError)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--metric: name at least one metric")
    return [metric(n) for n in names]


def _baseline_rows(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The baseline's measured rows: by label (`linear.dpfp[nu=2]`), else the variant run with
    the suite's defaults."""
    rows = df[df["label"] == baseline]
    if rows.empty and "params" in df:
        rows = df[(df["variant"] == baseline) & (df["params"].fillna("") == "")]
    if rows.empty:
        tip = did_you_mean(baseline, set(df["label"]))
        raise UserError(f"--baseline {baseline!r}: no such variant in these results{tip}")
    return rows[rows["status"].isin(MEASURED)]


def _key(row: pd.Series, axes: list[str]) -> tuple:
    return tuple(row.get(a) for a in axes)


def ratio_title(m: Metric, baseline: str) -> str:
    return f"speed-up vs {baseline}" if m.column == "latency_ms" else f"{m.column} ÷ {baseline}"


def ratio(m: Metric, row: pd.Series, base: pd.Series) -> float | None:
    """The case's ratio to the baseline on metric `m` (None when either value is missing)."""
    ours, theirs = row.get(m.column), base.get(m.column)
    if ours is None or theirs is None or pd.isna(ours) or pd.isna(theirs) or not ours or not theirs:
        return None
    return theirs / ours if m.column == "latency_ms" else ours / theirs


def metrics_table(
    df: pd.DataFrame,
    metrics: list[Metric],
    *,
    baseline: str | None = None,
    raw: bool = False,
    unsupported: bool = False,
) -> pd.DataFrame:
    """One row per case; each metric's cell as `show` formats it (or raw numbers), and, with
    `baseline`, its ratio to the baseline at the same shape ('—' where the baseline has none)."""
    for m in metrics:
        df = m.of(df)
    if not unsupported:
        df = hide_unsupported(df)
    axes = row_axes(df)
    shape = [c for c in SHAPE if c in df]
    base = {_key(r, shape): r for _, r in _baseline_rows(df, baseline).iterrows()} if baseline else {}
    rows = []
    for _, r in df.sort_values([*axes, "seq_len"]).iterrows():
        out = {a: r[a] for a in axes}
        out["causal"] = ("causal" if r["causal"] else "full") if "causal" in axes else None
        out["N"] = r["seq_len"]
        b = base.get(_key(r, shape))
        for m in metrics:
            out[m.column] = status_cell(r, m, raw)
            if baseline:
                value = ratio(m, r, b) if b is not None and r["status"] in MEASURED else None
                out[ratio_title(m, baseline)] = _ratio_text(m, value, r, b, raw)
        rows.append({k: v for k, v in out.items() if not (k == "causal" and v is None)})
    return pd.DataFrame(rows).fillna("")


def _ratio_text(m: Metric, value: float | None, row: pd.Series, base: pd.Series | None, raw: bool):
    if value is None:
        return None if raw else "—"
    if raw:
        return value
    text = f"{value:.3g}×"
    if m.column == "latency_ms" and base is not None:
        spread = math.hypot(relative_spread(row), relative_spread(base))
        if spread:
            text += f" ±{100 * spread:.0f}%"
    return text

"""Replicates read back: the records of one case's rounds become one row.

A run with `repeat` R writes one record per (case, round) (attnbench/runner/rounds.py). The
row of a case holds:

- `latency_replicates_ms`: each round's median, in round order (`replicate_rounds` names the
  rounds), and `replicates`, how many;
- `latency_ms`: the median of those medians, with `latency_ci_lo_ms` / `latency_ci_hi_ms`,
  its bootstrap 95 % confidence interval (attnbench/stats.py);
- `ratio_ref` (with `ratio_ref_ci_lo` / `ratio_ref_ci_hi` and `ratio_ref_replicates`): the
  latency as a ratio to the reference variant (`softmax.sdpa`) at the same shape, pairing
  replicates by round, so drift from one round to the next cancels;
- every other number: the median over the replicates that ended `ok` (each replicate's own
  quartiles stay in its record); flags: every flag any replicate raised; `wall_s`: the sum;
- status: `ok` when every replicate is; else the first failure's status and error.

A case with one record reads as before: no interval (one run has none).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from attnbench.stats import bootstrap_median_ci, median

REFERENCE = "softmax.sdpa"
# what makes two cases comparable: a case and the reference's case at the same shape
SHAPE = ["batch", "heads", "seq_len", "d_head", "dtype", "device", "causal", "mode", "threads"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def combine(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's replicate records (ordered by round) as one record, plus the replicate
    fields under `_replicates` for `flatten` to add."""
    if len(records) == 1:
        return records[0]
    ok = [r for r in records if r["status"] == "ok"]
    failed = next((r for r in records if r["status"] != "ok"), None)
    last = (ok or records)[-1]
    metrics: dict[str, Any] = dict(last.get("metrics") or {})
    for key in {k for r in ok for k, v in (r.get("metrics") or {}).items() if _number(v)}:
        values = [r["metrics"][key] for r in ok if _number((r.get("metrics") or {}).get(key))]
        metrics[key] = median(values)
    timed = [
        (r.get("round") or 0, r["metrics"]["latency_ms"])
        for r in ok
        if _number(r["metrics"].get("latency_ms"))
    ]
    flags = list(dict.fromkeys(f for r in records for f in r.get("flags") or ()))
    combined = {
        **last,
        "status": failed["status"] if failed else "ok",
        "error": failed.get("error") if failed else None,
        "metrics": metrics,
        "flags": flags,
        "wall_s": sum(r.get("wall_s") or 0 for r in records),
    }
    combined["_replicates"] = replicate_fields([ms for _, ms in timed], [rnd for rnd, _ in timed])
    return combined


def replicate_fields(latencies: list[float], rounds: list[int]) -> dict[str, Any]:
    """The row's replicate columns for these per-round medians."""
    out: dict[str, Any] = {
        "replicates": len(latencies),
        "latency_replicates_ms": latencies,
        "replicate_rounds": rounds,
    }
    ci = bootstrap_median_ci(latencies)
    if ci:
        out["latency_ci_lo_ms"], out["latency_ci_hi_ms"] = ci
    return out


def round_latencies(row: pd.Series | dict) -> list[float]:
    """`row`'s per-round medians (ms), in round order."""
    return [float(v) for v in _list(row, "latency_replicates_ms")]


def round_ratios(row: pd.Series | dict, ref: pd.Series | dict) -> list[float]:
    """`row`'s latency over the reference's, round by round, for the rounds both have."""
    mine, theirs = _by_round(row), _by_round(ref)
    return [mine[r] / theirs[r] for r in sorted(set(mine) & set(theirs)) if theirs[r] > 0]


def paired_latencies(base: pd.Series | dict, current: pd.Series | dict) -> tuple[list[float], list[float]]:
    """Both rows' per-round medians (ms) for the rounds both have, in round order: in one
    same-job A/B a round's two sides ran back to back, so each pair saw the same machine."""
    b, c = _by_round(base), _by_round(current)
    rounds = sorted(set(b) & set(c))
    return [float(b[r]) for r in rounds], [float(c[r]) for r in rounds]


def _by_round(row: pd.Series | dict) -> dict:
    return dict(zip(_list(row, "replicate_rounds"), _list(row, "latency_replicates_ms"), strict=False))


def _list(row: pd.Series | dict, key: str) -> list:
    value = row.get(key)
    return value if isinstance(value, list) else []


def reference_rows(df: pd.DataFrame, reference: str) -> dict[tuple, pd.Series]:
    """The reference variant's `ok` row (default parameters) at each shape."""
    if df.empty or "variant" not in df:
        return {}
    params = df["params"].fillna("") if "params" in df else pd.Series("", index=df.index)
    ref = df[(df["variant"] == reference) & (params == "") & (df["status"] == "ok")]
    return {tuple(r[k] for k in SHAPE): r for _, r in ref.iterrows()}


def add_reference_ratios(df: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """`ratio_ref` and its interval for every replicated row whose shape the reference ran."""
    if "latency_replicates_ms" not in df:
        return df
    refs = reference_rows(df, reference)
    columns: dict[str, list] = {k: [] for k in ("ratio_ref", "ratio_ref_ci_lo", "ratio_ref_ci_hi")}
    columns["ratio_ref_replicates"] = []
    for _, row in df.iterrows():
        key = tuple(row.get(k) for k in SHAPE)
        ratios = round_ratios(row, refs[key]) if key in refs and row["status"] == "ok" else []
        ci = bootstrap_median_ci(ratios) if len(ratios) > 1 else None
        columns["ratio_ref"].append(median(ratios) if len(ratios) > 1 else None)
        columns["ratio_ref_ci_lo"].append(ci[0] if ci else None)
        columns["ratio_ref_ci_hi"].append(ci[1] if ci else None)
        columns["ratio_ref_replicates"].append(ratios if len(ratios) > 1 else None)
    return df.assign(**{k: pd.Series(v, index=df.index, dtype=object if k.endswith("replicates") else float)
                        for k, v in columns.items()})  # fmt: skip

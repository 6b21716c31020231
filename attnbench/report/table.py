"""Tables from results: one row per variant (and whatever else varies), one column per
sequence length, one metric in the cells. Used by `attnbench show` and the end-of-run summary."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from attnbench.errors import UserError
from attnbench.results.frame import metric_columns


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    fmt: str  # format of one value
    spread: str | None = None  # column holding the interquartile range, shown as ± half of it
    # columns holding the 95 % interval over replicates, shown as [lo, hi] in place of the spread
    interval: tuple[str, str] | None = None
    scale: float = 1.0
    timed: bool = False  # derived from the timing, so the `noisy` flag applies
    # computed from other columns rather than recorded: adds the column to a results frame
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def of(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` holding this metric's column (derived now where it is not recorded)."""
        return self.derive(df) if self.derive and self.column not in df else df


def _roofline(df: pd.DataFrame) -> pd.DataFrame:
    from attnbench.report.roofline import add_roofline  # it draws with figures, which reads this module

    return add_roofline(df)


METRICS = {
    m.column: m
    for m in (
        Metric(
            "latency_ms",
            "median latency, ms (± half the IQR, % of median; with replicates [95 % CI])",
            "{:.3g}",
            spread="latency_iqr_ms",
            interval=("latency_ci_lo_ms", "latency_ci_hi_ms"),
            timed=True,
        ),
        Metric(
            "ratio_ref",
            "latency ratio to softmax.sdpa, same shape, paired by round (median [95 % CI]; needs replicates)",
            "{:.3g}",
            interval=("ratio_ref_ci_lo", "ratio_ref_ci_hi"),
            timed=True,
        ),
        Metric("tokens_per_s", "throughput, tokens/s", "{:,.0f}", timed=True),
        Metric("tflops", "achieved TFLOP/s", "{:.3g}", timed=True),
        Metric("pct_peak_flops", "% of this machine's matmul peak", "{:.1f}", timed=True),
        Metric("pct_peak_bw", "% of this machine's copy bandwidth", "{:.1f}", timed=True),
        Metric("roof_pct", "% of the roofline at its intensity", "{:.1f}", timed=True, derive=_roofline),
        Metric("peak_mem_bytes", "peak memory, MiB", "{:,.2f}", scale=1 / 2**20),
        Metric("rel_err", "relative error vs the variant's own float64 oracle", "{:.1e}"),
        Metric("grad_rel_err", "gradient relative error vs the variant's own float64 oracle", "{:.1e}"),
        Metric("wall_s", "wall time of the case, s", "{:.1f}"),
    )
}
ROW_AXES = ["label", "dtype", "device", "causal", "mode", "batch", "heads", "d_head", "threads", "run"]
# results of several machines (a Ray cluster's nodes, files merged) are told apart by the
# device they ran on: identical machines share a row, and a different one never hides in it
MACHINE = "device_name"
INVALID_MARK = "†"  # compile fell back / recompiled while timed
NOISY_MARK = "~"  # spread above the noise threshold
INACCURATE_MARK = "✗"  # measured, but its error against its oracle is above the tolerance
DISTURBED_MARK = "!"  # other processes or page faults disturbed the timed region
DISTURBED = ("contended", "page_faults")


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r} (choose from {', '.join(METRICS)})")
    return METRICS[name]


def pivot(df: pd.DataFrame, name: str, *, raw: bool = False, unsupported: bool = False) -> pd.DataFrame:
    """Rows: label plus the case axes that vary; columns: seq_len. Cells hold the formatted
    metric (or the raw number with `raw`), or the status when the case did not run. Rows
    whose every case is `unsupported` are left out unless `unsupported`."""
    m = metric(name)
    if df.empty:
        raise UserError("no results to show")
    df = m.of(df)
    if not unsupported:
        df = hide_unsupported(df)
    rows = row_axes(df)
    cells = df.apply(lambda r: status_cell(r, m, raw), axis=1)
    df = df.assign(_cell=cells)
    if MACHINE in rows:
        df[MACHINE] = df[MACHINE].fillna("unknown")  # pivot_table drops rows with a missing key
    if "causal" in df:
        df["causal"] = df["causal"].map({True: "causal", False: "full"}).fillna(df["causal"])
    table = df.pivot_table(index=rows, columns="seq_len", values="_cell", aggfunc="first", sort=True)
    table.columns = [f"N={c}" for c in table.columns]
    return table.reset_index().fillna("")


def row_axes(df: pd.DataFrame) -> list[str]:
    """`label`, the case axes that vary in `df`, and the machine where there are several."""
    rows = [c for c in ROW_AXES if c in df and (c == "label" or df[c].nunique(dropna=False) > 1)]
    return rows + ([MACHINE] if MACHINE in df and df[MACHINE].nunique() > 1 else [])


def machines(df: pd.DataFrame) -> str:
    """`host-a (12 cases), host-b (30 cases)`: where the results ran, when on more than one
    host; "" otherwise."""
    if "hostname" not in df or df["hostname"].nunique() < 2:
        return ""
    counts = df["hostname"].value_counts().sort_index()
    return ", ".join(f"{host} ({n} case{'s' * (n != 1)})" for host, n in counts.items())


def hide_unsupported(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the (label, axes) groups in which no case could run at all."""
    rows = [c for c in ROW_AXES if c in df]
    runnable = df.groupby(rows, dropna=False)["status"].transform(lambda s: (s != "unsupported").any())
    kept = df[runnable]
    return kept if not kept.empty else df


def status_cell(row: pd.Series, m: Metric, raw: bool):
    """The metric of one case as a table shows it: its value with its spread and marks, or its
    status when it did not run."""
    if row["status"] not in MEASURED:
        return row["status"]
    value = row.get(m.column)
    if value is None or pd.isna(value):
        return "—"
    if raw:
        return value
    text = m.fmt.format(value * m.scale)
    interval = interval_text(row, m)
    if interval:
        text += f" {interval}"
    elif m.spread and not pd.isna(row.get(m.spread)) and value:
        text += f" ±{50 * row[m.spread] / value:.0f}%"
    if row["status"] == "inaccurate":
        text += INACCURATE_MARK
    flags = str(row.get("flags") or "").split(",")
    if "fallback_eager" in flags or "recompiled_during_timing" in flags:
        text += INVALID_MARK
    elif m.timed:
        text += NOISY_MARK if "noisy" in flags else ""
        text += DISTURBED_MARK if any(f in flags for f in DISTURBED) else ""
    return text


def interval_text(row: pd.Series, m: Metric) -> str:
    """`[lo, hi]` of the metric's interval over replicates, or "" when the row has none."""
    if not m.interval:
        return ""
    lo, hi = (row.get(c) for c in m.interval)
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return f"[{m.fmt.format(lo * m.scale)}, {m.fmt.format(hi * m.scale)}]"


def status_counts(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in counts.index)


MEASURED = ("ok", "inaccurate")  # statuses whose metrics were measured

LEGEND = (
    f"{INACCURATE_MARK} inaccurate (error against its oracle above the tolerance: other maths); "
    f"{INVALID_MARK} invalid (torch.compile fell back to eager or recompiled while timed); "
    f"{NOISY_MARK} noisy (IQR above 10% of the median); "
    f"{DISTURBED_MARK} disturbed while timed (other processes on its cores, or page faults)"
)


# --- helpers of the tasks' tables -----------------------------------------------------------
def row_keys(df: pd.DataFrame, candidates: list[str]) -> list[str]:
    """`label` and those of `candidates` that vary in `df`: the rows of a task's table."""
    return ["label"] + [c for c in candidates if c in df and df[c].nunique(dropna=False) > 1]


def row_name(keys: list[str], key: tuple) -> str:
    """A figure's name for one row of `row_keys`: the label, then `name=value` for the rest."""
    rest = (f"{k.removeprefix('task.')}={v}" for k, v in zip(keys[1:], key[1:], strict=True))
    return " ".join([str(key[0]), *rest])


def generic_task_table(df: pd.DataFrame, *, raw: bool = False) -> pd.DataFrame:
    """One row per case: its label and the task parameters that vary, its status, and every
    scalar metric (what a task without a table of its own shows)."""
    keys = row_keys(df, sorted(c for c in df.columns if c.startswith("task.") and c != "task.name"))
    table = df[[*keys, "status", *metric_columns(df)]].copy()
    if not raw:
        for column in table.columns[len(keys) + 1 :]:
            table[column] = table[column].map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    return table.fillna("").rename(columns=lambda c: c.removeprefix("task."))


def explode(df: pd.DataFrame, column: str, base) -> pd.DataFrame:
    """One row per item of each case's list metric `column` (a task's per-length results),
    each with `base(case row)`; a case that did not run gives one row with its status."""
    rows = []
    for _, r in df.iterrows():
        items = r.get(column)
        if r["status"] != "ok" or not isinstance(items, list):
            rows.append({**base(r), "status": r["status"], "reason": r.get("error")})
        else:
            rows.extend({"status": "ok", **base(r), **item} for item in items)
    return pd.DataFrame(rows)


def d_dot_of(group: pd.DataFrame) -> int | None:
    """The d_dot a variant's results record (one per variant), or None (no fixed-size memory)."""
    d_dot = group["d_dot"].dropna() if "d_dot" in group else ()
    return int(d_dot.iloc[0]) if len(d_dot) else None


def crossover(ours: dict[int, float], theirs: dict[int, float]) -> float | None:
    """The length from which `ours` (a cost by length) stays below `theirs`, interpolated in
    log-log between the lengths around the crossing; 0 when it is below from the start, None
    when it never gets there (or gets there and rises again)."""
    lengths = sorted(set(ours) & set(theirs))
    below = [ours[n] < theirs[n] for n in lengths]
    if not lengths or not below[-1]:
        return None
    first = len(below) - below[::-1].index(False) if False in below else 0
    if first == 0:
        return 0
    n0, n1 = lengths[first - 1], lengths[first]
    d0 = math.log(ours[n0]) - math.log(theirs[n0])
    d1 = math.log(ours[n1]) - math.log(theirs[n1])
    frac = d0 / (d0 - d1) if d0 != d1 else 1.0
    return math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0)))

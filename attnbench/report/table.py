"""Tables from results: one row per variant (and whatever else varies), one column per
sequence length, one metric in the cells. Used by `attnbench show` and the end-of-run summary."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from rich.markup import escape
from rich.table import Table

from attnbench.errors import UserError


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    fmt: str  # format of one value
    spread: str | None = None  # column holding the interquartile range, shown as ± half of it
    scale: float = 1.0
    timed: bool = False  # derived from the timing, so the `noisy` flag applies


METRICS = {
    m.column: m
    for m in (
        Metric(
            "latency_ms",
            "median latency, ms (± half the IQR, % of median)",
            "{:.3g}",
            spread="latency_iqr_ms",
            timed=True,
        ),
        Metric("tokens_per_s", "throughput, tokens/s", "{:,.0f}", timed=True),
        Metric("tflops", "achieved TFLOP/s", "{:.3g}", timed=True),
        Metric("pct_peak_flops", "% of this machine's matmul peak", "{:.1f}", timed=True),
        Metric("pct_peak_bw", "% of this machine's copy bandwidth", "{:.1f}", timed=True),
        Metric("peak_mem_bytes", "peak memory, MiB", "{:,.2f}", scale=1 / 2**20),
        Metric("rel_err", "relative error vs float64", "{:.1e}"),
        Metric("grad_rel_err", "gradient relative error vs float64", "{:.1e}"),
        Metric("wall_s", "wall time of the case, s", "{:.1f}"),
    )
}
ROW_AXES = ["label", "dtype", "device", "causal", "mode", "batch", "heads", "d_head", "threads"]
INVALID_MARK = "†"  # compile fell back / recompiled while timed
NOISY_MARK = "~"  # spread above the noise threshold


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
    if not unsupported:
        df = hide_unsupported(df)
    rows = [c for c in ROW_AXES if c in df and (c == "label" or df[c].nunique(dropna=False) > 1)]
    cells = df.apply(lambda r: _cell(r, m, raw), axis=1)
    df = df.assign(_cell=cells)
    if "causal" in df:
        df["causal"] = df["causal"].map({True: "causal", False: "full"}).fillna(df["causal"])
    table = df.pivot_table(index=rows, columns="seq_len", values="_cell", aggfunc="first", sort=True)
    table.columns = [f"N={c}" for c in table.columns]
    return table.reset_index().fillna("")


def hide_unsupported(df: pd.DataFrame) -> pd.DataFrame:
    """Drop the (label, axes) groups in which no case could run at all."""
    rows = [c for c in ROW_AXES if c in df]
    runnable = df.groupby(rows, dropna=False)["status"].transform(lambda s: (s != "unsupported").any())
    kept = df[runnable]
    return kept if not kept.empty else df


def _cell(row: pd.Series, m: Metric, raw: bool):
    if row["status"] != "ok":
        return row["status"]
    value = row.get(m.column)
    if value is None or pd.isna(value):
        return "—"
    if raw:
        return value
    text = m.fmt.format(value * m.scale)
    if m.spread and not pd.isna(row.get(m.spread)) and value:
        text += f" ±{50 * row[m.spread] / value:.0f}%"
    flags = str(row.get("flags") or "")
    if "fallback_eager" in flags or "recompiled_during_timing" in flags:
        text += INVALID_MARK
    elif m.timed and "noisy" in flags:
        text += NOISY_MARK
    return text


def rich_table(table: pd.DataFrame, title: str) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for col in table.columns:
        out.add_column(str(col), justify="left" if not str(col).startswith("N=") else "right")
    for _, row in table.iterrows():
        out.add_row(*[_status_style(str(v)) for v in row])
    return out


def _status_style(text: str) -> str:
    colour = {"oom": "red", "crash": "red", "error": "red", "timeout": "yellow", "unsupported": "dim"}.get(
        text
    )
    return f"[{colour}]{text}[/]" if colour else escape(text)


def status_counts(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in counts.index)


LEGEND = (
    f"{INVALID_MARK} invalid (torch.compile fell back to eager or recompiled while timed); "
    f"{NOISY_MARK} noisy (IQR above 10% of the median)"
)

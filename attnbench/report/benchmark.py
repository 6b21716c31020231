"""The report's benchmark section, shaped by what the results hold: figures against N when
several lengths were run and bars at the one length otherwise; a table of the cases that ran
(speed-up against softmax.sdpa at the same shape, d_dot, the error with what it is measured
against); and the cases that could not run here apart, one line per variant and reason."""

from __future__ import annotations

import pandas as pd

from attnbench.cases import Shape
from attnbench.report import figures
from attnbench.report.compare import SHAPE
from attnbench.report.ratios import ratio, ratio_title
from attnbench.report.sections import Cell, Figure, Section, Table, cell, png
from attnbench.report.table import interval_text, metric
from attnbench.results.frame import relative_spread

REFERENCE = "softmax.sdpa"  # the ratio column's baseline, as the regression gate's
ERROR_COLUMN = "rel err vs its oracle"


def error_source(row: pd.Series) -> str:
    """What a case's error is measured against: its float64 oracle, and whether that error
    is rounding (an exact variant) or the approximation itself."""
    oracle = row.get("err_vs")
    if oracle is None or pd.isna(oracle):
        return ""
    kind = " (approximation error)" if row.get("err_kind") == "approximation" else ""
    return f"float64 {oracle}{kind}"


def cases_table(df: pd.DataFrame) -> Table:
    """Every case that ran (or failed trying): shape, status, median latency with its spread,
    speed-up against softmax.sdpa, peak memory, d_dot, error and its oracle, and why not."""
    latency = metric("latency_ms")
    base = {tuple(r[a] for a in SHAPE): r for _, r in df[df["label"] == REFERENCE].iterrows()}
    has_ratio, has_d_dot = bool(base), "d_dot" in df and df["d_dot"].notna().any()
    hosts = "hostname" in df and df["hostname"].nunique() > 1  # a cluster's, or files merged
    has_interval = any(interval_text(r, latency) for _, r in df.iterrows())  # replicates (--repeat)
    flagged = "flags" in df and df["flags"].fillna("").str.len().gt(0).any()
    rows = []
    for _, r in df.sort_values(["label", "mode", "causal", "seq_len"]).iterrows():
        median, spread = r.get("latency_ms"), relative_spread(r)
        peak = r.get("peak_mem_bytes")
        row = [
            cell(r["label"]),
            *([cell(r["hostname"])] if hosts else []),
            cell(str(Shape(r["batch"], r["heads"], r["seq_len"], r["d_head"]))),
            cell(r["dtype"]),
            cell(r["device"]),
            cell("causal" if r["causal"] else "full"),
            cell(r["mode"]),
            cell(r["status"]),
            cell(median),
            Cell(f"±{100 * spread:.1f}%" if spread else "", "num"),
            *([Cell(interval_text(r, latency), "num")] if has_interval else []),
        ]
        if has_ratio:
            b = base.get(tuple(r[a] for a in SHAPE))
            row.append(cell(ratio(latency, r, b) if b is not None else None))
        row.append(cell(None if peak is None or pd.isna(peak) else peak / 2**20))
        if has_d_dot:
            row.append(cell(r.get("d_dot")))
        row += [cell(r.get("rel_err")), cell(error_source(r))]
        row += [cell(r.get("flags") or None)] if flagged else []
        row.append(cell(r.get("error")))
        rows.append(row)
    columns = [
        "variant",
        *(["host"] if hosts else []),
        "shape",
        "dtype",
        "device",
        "mask",
        "mode",
        "status",
        "median ms",
        "spread",
        *(["95% CI ms"] if has_interval else []),
    ]
    columns += [ratio_title(latency, REFERENCE)] if has_ratio else []
    columns += ["peak MiB"] + (["d_dot"] if has_d_dot else [])
    columns += [ERROR_COLUMN, "measured against", *(["flags"] if flagged else []), "reason"]
    return Table("Every case that ran (click a header to sort)", columns, rows)


def unsupported_table(df: pd.DataFrame) -> Table | None:
    """The cases that could not run here, one row per variant and reason."""
    skipped = df[df["status"] == "unsupported"]
    if skipped.empty:
        return None
    counts = skipped.groupby(["label", "error"], dropna=False).size().reset_index(name="cases")
    rows = [[cell(r["label"]), cell(int(r["cases"])), cell(r["error"])] for _, r in counts.iterrows()]
    title = f"Could not run here: {len(skipped)} cases of {skipped['label'].nunique()} variants"
    return Table(title, ["variant", "cases", "why"], rows)


def benchmark_figures(df: pd.DataFrame) -> list[Figure]:
    """Per (mask, mode): latency, throughput and peak memory against N (log-log) when the
    results hold several lengths, latency and peak memory as bars at the one length
    otherwise; the crossover against softmax (several lengths only) and the positional
    schemes' costs when the results have them."""
    out = []
    extra = [("where other variants overtake softmax.sdpa (latency ratio)", figures.plot_crossover)]
    if "params" in df and df["params"].fillna("").str.contains("position=").any():
        extra.append(("cost of each positional scheme", figures.plot_position_costs))
    for title, draw in extra:
        data = png(lambda p, draw=draw: draw(df, p))
        if data:
            out.append(Figure(title, data))
    for (causal, mode), part in df.groupby(["causal", "mode"], sort=True):
        where = f"{'causal' if causal else 'full'} {mode}"
        known = part["seq_len"].dropna()  # a hand-edited file may lose a record's length
        lengths = known.nunique()
        if lengths > 1:
            charts = (
                ("latency_ms", "latency"),
                ("tokens_per_s", "throughput"),
                ("peak_mem_bytes", "peak memory"),
            )
        else:
            charts = (("latency_ms", "latency"), ("peak_mem_bytes", "peak memory"))
        for name, what in charts:
            if name not in part or not part[name].notna().any():
                continue
            if lengths > 1:
                title = f"{what} vs sequence length, {where}"
                draw = figures.plot_vs_seq_len
            else:
                at = f"N = {int(known.iloc[0])}" if len(known) else "an unknown length"
                title = f"{what} at {at}, {where}"
                draw = figures.plot_bars
            data = png(
                lambda p, part=part, name=name, title=title, draw=draw: draw(part, name, p, title=title)
            )
            if data:
                out.append(Figure(title, data))
    return out


def benchmark_section(df: pd.DataFrame) -> Section:
    ran = df[df["status"] != "unsupported"]
    tables = [cases_table(ran)] if not ran.empty else []
    skipped = unsupported_table(df)
    if skipped is not None:
        tables.append(skipped)
    return Section("Benchmark", benchmark_figures(df), tables)

"""The speed–quality frontier: each variant's quality (retrieval capacity, perplexity at 1×
and 16× the training length) against its cost (tokens/s and peak memory at one shape), with
the Pareto-optimal variants marked: the answer to "which is fastest and leanest while still
good enough".

Quality and cost come from different suites, joined by label (`linear.elu[norm=sum]`), or by
variant name when the labels differ (the quality suite sets parameters the speed suite does
not); the `cost from` column says which row priced it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from attnbench.results.frame import task_column


def cost_shape(benchmark: pd.DataFrame) -> dict | None:
    """The shape costs are read at: causal fwd+bwd (else fwd) at the longest N that every
    variant with an ok result reached."""
    ok = (
        benchmark[(benchmark["status"] == "ok") & benchmark["tokens_per_s"].notna()]
        if len(benchmark)
        else benchmark
    )
    if ok.empty:
        return None
    mode = "fwd+bwd" if (ok["mode"] == "fwd+bwd").any() else "fwd"
    part = ok[(ok["mode"] == mode) & (ok["causal"] == ok["causal"].max())]
    reached = part.groupby("label")["seq_len"].max()
    return {"mode": mode, "causal": bool(part["causal"].iloc[0]), "seq_len": int(reached.min())}


def quality_measures(df: pd.DataFrame) -> dict[str, bool]:
    """The quality measures of the tasks in `df` (name -> larger is better)."""
    from attnbench.tasks import get_task

    names = task_column(df).dropna().unique()
    return {k: v for name in sorted(names) for k, v in get_task(name).quality.items()}


def quality_rows(df: pd.DataFrame) -> dict[str, dict]:
    """Quality by label, from every task in `df` that measures one (retrieval capacity,
    perplexity at 1× and 16× the training length, …): each task's `quality_of`."""
    from attnbench.tasks import get_task

    out: dict[str, dict] = {}
    names = task_column(df)
    for name in sorted(names.dropna().unique()):
        for label, row in get_task(name).quality_of(df[names == name]).items():
            out.setdefault(label, {}).update(row)
    return out


def pareto(points: list[dict], objectives: dict[str, bool], quality: Iterable[str]) -> list[bool]:
    """Which points no other point dominates (at least as good in every objective that both
    have, better in one, with at least one quality measure in common); objectives map a key
    to True when larger is better."""

    def better_or_equal(a, b, key, larger):
        return a[key] >= b[key] if larger else a[key] <= b[key]

    flags = []
    for p in points:
        dominated = False
        for q in points:
            if q is p:
                continue
            keys = [k for k in objectives if _num(p.get(k)) and _num(q.get(k))]
            if not set(keys) & set(quality):
                continue  # no quality both were measured on: not comparable
            if all(better_or_equal(q, p, k, objectives[k]) for k in keys) and any(q[k] != p[k] for k in keys):
                dominated = True
                break
        flags.append(not dominated)
    return flags


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def frontier_table(df: pd.DataFrame) -> pd.DataFrame:
    """Rows: every variant with a quality result; columns: quality, cost at one shape, and
    whether it is on the Pareto frontier. Empty when the results hold no quality task."""
    quality = quality_rows(df)
    measures = quality_measures(df)
    names = task_column(df)
    benchmark = df[names.isna()]
    shape = cost_shape(benchmark) if len(benchmark) and "tokens_per_s" in benchmark else None
    priced = pd.DataFrame()
    if shape:
        priced = benchmark[
            (benchmark["status"] == "ok")
            & (benchmark["mode"] == shape["mode"])
            & (benchmark["causal"] == shape["causal"])
            & (benchmark["seq_len"] == shape["seq_len"])
        ]
    rows = []
    for label, q in sorted(quality.items()):
        row = {"label": label, **{k: q.get(k) for k in measures}}
        match = priced[priced["label"] == label] if len(priced) else priced
        if len(priced) and match.empty:
            match = priced[(priced["variant"] == q["variant"]) & (priced["params"].fillna("") == "")]
        if len(match):
            best = match.iloc[0]
            row["tokens/s"] = float(best["tokens_per_s"])
            peak = best.get("peak_mem_bytes")
            row["peak MiB"] = float(peak) / 2**20 if peak is not None and not pd.isna(peak) else None
            row["cost from"] = best["label"]
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    objectives = {**measures, "tokens/s": True, "peak MiB": False}
    for row, on in zip(rows, pareto(rows, objectives, measures), strict=True):
        row["Pareto"] = "★" if on else ""
    table = pd.DataFrame(rows)
    if shape:
        table.attrs["shape"] = (
            f"{'causal' if shape['causal'] else 'full'} {shape['mode']} at N = {shape['seq_len']}"
        )
    table.attrs["quality"] = measures
    return table


def plot_frontier(table: pd.DataFrame, path, *, title: str | None = None):
    """Quality against tokens/s, one panel per quality measure, Pareto points starred."""
    from attnbench.report.figures import pyplot, save

    plt = pyplot()
    larger = table.attrs.get("quality", {})
    measures = [m for m in larger if m in table and table[m].map(_num).any()]
    if "tokens/s" not in table or not measures:
        from attnbench.errors import UserError

        raise UserError("the results hold no quality measure with a cost to plot against")
    fig, axes = plt.subplots(1, len(measures), figsize=(5.5 * len(measures), 4.5), squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        part = table[table[measure].map(_num) & table["tokens/s"].map(_num)]
        for _, r in part.iterrows():
            star = r["Pareto"] == "★"
            ax.scatter(r["tokens/s"], r[measure], marker="*" if star else "o", s=120 if star else 30,
                       color="tab:red" if star else "tab:blue")  # fmt: skip
            ax.annotate(
                r["label"], (r["tokens/s"], r[measure]), fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"tokens/s ({table.attrs.get('shape', 'one shape')})")
        ax.set_ylabel(measure + (" (higher is better)" if larger[measure] else " (lower is better)"))
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title or "speed–quality frontier (★ Pareto-optimal)")
    return save(fig, axes[0][-1], path, legend=False)

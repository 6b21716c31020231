"""The retrieval task's results as the paper shows them: capacity (the largest S a memory
holds) beside d_dot, the loss by S, and the loss-against-S figure (Schlag et al. 2021, Fig. 2).

Capacity is computed per seed, from that seed's own curve, and only then summarised: the
median over seeds (the lower middle value for an even count, so it is a swept S) and the range.
The S=… cells and the figure's line hold the median loss over seeds, the band its range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnbench.errors import UserError
from attnbench.report.spread import Spread, draw_band, seeds_of

if TYPE_CHECKING:
    import pandas as pd

NOT_ARMS = ("task.name", "task.S", "task.seed")  # task columns that do not make a row of their own


def capacity(losses: dict[int, float], threshold: float) -> int | None:
    """The largest S up to which the loss stays under `threshold`: every swept S up to
    it is retrieved (a case that did not run is not). None if the smallest S already fails.
    A success past a failure (training noise near the limit) does not extend it."""
    held = None
    for s in sorted(losses):
        if not losses[s] < threshold:  # NaN compares False
            break
        held = s
    return held


def crossing(losses: dict[int, float], threshold: float) -> float | None:
    """Where the loss curve first crosses `threshold`: log-loss interpolated linearly in S
    between the capacity and the next swept S, so two variants that hold the same grid point
    still order by how close they came. None without a crossing."""
    cap = capacity(losses, threshold)
    later = sorted(s for s in losses if cap is not None and s > cap and not math.isnan(losses[s]))
    if cap is None or not later:
        return None
    s0, s1 = cap, later[0]
    y0, y1, y = math.log(losses[s0]), math.log(losses[s1]), math.log(threshold)
    return s0 + (s1 - s0) * (y - y0) / (y1 - y0)


def reported_loss(df: pd.DataFrame) -> pd.Series:
    """The loss each run reports (`loss`: its best or its last evaluation, as its `report`
    parameter chose); results written before that choice existed report the best."""
    best = df.get("best_loss")
    if "loss" not in df:
        return best
    return df["loss"] if best is None else df["loss"].fillna(best)


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that finished with a loss, with that loss as `reported` and their `seed`."""
    if "best_loss" not in df and "loss" not in df:
        return df.iloc[0:0].assign(reported=[], seed=[])
    out = df.assign(reported=reported_loss(df), seed=seeds_of(df))
    return out[(out["status"] == "ok") & out["reported"].notna()]


def arm_keys(df: pd.DataFrame) -> list[str]:
    """The columns one table row (one figure line) stands for: the label and whatever else
    varies (the setting, d_key, a protocol parameter, the device), but not S or the seed."""
    from attnbench.report.table import row_keys

    task = sorted(c for c in df.columns if c.startswith("task.") and c not in NOT_ARMS)
    return row_keys(df, [*task, "device", "dtype"])


def capacity_text(cap: int | None, swept: Collection[int]) -> str:
    """`60`; `≥ 96` when the variant held every S swept (its limit lies beyond the sweep);
    `< 8` when it failed the smallest."""
    if cap is None:
        return f"< {min(swept)}"
    return f"≥ {cap}" if cap == max(swept) else str(cap)


def capacity_table(df: pd.DataFrame, threshold: float, *, raw: bool = False) -> pd.DataFrame:
    """Rows: arms (`arm_keys`); columns: d_dot, capacity (the median over seeds; with several
    seeds also each seed's and the range), capacity/d_dot, the interpolated crossing, then
    S=… holding the median loss over seeds (or the status when no seed ran)."""
    import pandas as pd

    from attnbench.report.table import d_dot_of

    keys = arm_keys(df)
    ok_all = ok_rows(df)
    several = seeds_of(df).nunique() > 1
    rows = []
    for key, group in df.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        d_dot = d_dot_of(group)
        row["d_dot"] = d_dot
        if d_dot is None and not raw:  # no fixed-size memory (a softmax KV cache), or never ran
            row["d_dot"] = "unbounded" if (group["status"] == "ok").any() else "—"
        ok = ok_all.loc[ok_all.index.intersection(group.index)]
        grid = sorted(int(s) for s in group["task.S"].unique())
        per_seed = {}
        for seed in sorted(seeds_of(group).unique()):
            mine = ok[ok["seed"] == seed]
            losses = dict.fromkeys(grid, math.nan) | dict(
                zip(mine["task.S"].astype(int), mine["reported"], strict=True)
            )
            per_seed[seed] = losses
        caps = [capacity(losses, threshold) for losses in per_seed.values()]
        ordered = [-1 if c is None else c for c in caps]  # failing at the smallest S ranks lowest
        median = statistics.median_low(ordered)
        median = None if median < 0 else median
        name = f"capacity (loss<{threshold:g})"
        if several:
            row["capacity by seed"] = caps if raw else " / ".join(capacity_text(c, grid) for c in caps)
        row[name] = median if raw else capacity_text(median, grid)
        if several:
            low, high = min(ordered), max(ordered)
            span = tuple(None if c < 0 else c for c in (low, high))  # -1: failed at the smallest S
            row["range"] = span if raw else "–".join(capacity_text(c, grid) for c in span)
        ratio = median / d_dot if median is not None and d_dot else None
        row["capacity/d_dot"] = ratio if raw else ("" if ratio is None else f"{ratio:.2f}")
        crossings = [crossing(losses, threshold) for losses in per_seed.values()]
        cross = statistics.median(crossings) if crossings and None not in crossings else None
        row["crossing S"] = cross if raw else ("" if cross is None else f"{cross:.1f}")
        for s in grid:
            at = ok[ok["task.S"] == s]["reported"]
            if len(at):
                value = statistics.median(at)
                row[f"S={s}"] = value if raw else f"{value:.3g}"
            else:
                row[f"S={s}"] = group[group["task.S"] == s]["status"].iloc[0]
        rows.append(row)
    table = pd.DataFrame(rows)
    s_cols = sorted((c for c in table.columns if c.startswith("S=")), key=lambda c: int(c[2:]))
    fixed = [c for c in table.columns if not c.startswith("S=")]
    return table[fixed + s_cols].fillna("").rename(columns=lambda c: c.removeprefix("task."))


def plot_capacity(
    df: pd.DataFrame,
    path: str | Path,
    *,
    threshold: float,
    loss: str = "evaluation loss",
    title: str | None = None,
) -> Path:
    """Retrieval results as the fast-weight paper's Fig. 2: the loss (`loss` names which)
    against the number of stored pairs S, one line per arm (d_dot in the legend): the median
    over seeds, the range a band; the capacity threshold dashed; one panel per setting."""
    from attnbench.report.figures import outside_legend, pyplot, save, with_devices
    from attnbench.report.table import d_dot_of, row_name

    plt = pyplot()
    ok = ok_rows(df)
    if ok.empty:
        raise UserError("no ok retrieval results to plot")
    keys = [k for k in arm_keys(df) if k != "task.setting"]
    settings = sorted(ok["task.setting"].dropna().unique()) if "task.setting" in ok else []
    panels = [(s, ok[ok["task.setting"] == s]) for s in settings] if len(settings) > 1 else [(None, ok)]
    # the legend sits outside, to the right: room for it beside the last panel
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels) + 5, 5), squeeze=False)
    arms = sorted({k if isinstance(k, tuple) else (k,) for k, _ in ok.groupby(keys, dropna=False)}, key=str)
    colors = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20").colors
    several = ok["seed"].nunique() > 1
    for ax, (setting, part) in zip(axes[0], panels, strict=True):
        for key, group in part.groupby(keys, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            d_dot = d_dot_of(group)
            suffix = f"  (d_dot {d_dot})" if d_dot is not None else ""
            by_s = list(group.groupby("task.S")["reported"])
            spreads = [Spread.of(losses) for _, losses in by_s]
            color = colors[arms.index(key) % len(colors)]  # one colour per arm across the panels
            draw_band(
                ax, [s for s, _ in by_s], spreads, color, row_name(keys, key) + suffix, marker="o", ms=4
            )
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"capacity threshold {threshold:g}")
        ax.set_yscale("log")
        ax.set_xlabel(with_devices("stored pairs S", ok))
        ax.set_ylabel(f"{loss} (0.5·squared error)" + (", median and range over seeds" if several else ""))
        name = title or "associative retrieval: loss vs number of stored pairs"
        ax.set_title(name if setting is None else f"{name}, setting {int(setting)}")
        ax.grid(True, which="both", alpha=0.3)
        outside_legend(ax)
    return save(fig, axes[0][-1], path, legend=False)

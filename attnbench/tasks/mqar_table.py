"""The MQAR task's results as Zoology shows them: held-out query accuracy for each (L, D)
point and model width, at the best learning rate, and accuracy against D per width.

Zoology sweeps the learning rate and keeps the best per point. With several seeds the best
learning rate is the one that solves the point in the most seeds, then the one with the best
median over seeds (choosing per seed would report each seed's luckiest rate; choosing on the
median alone would prefer a rate one seed never learns at, when it leads by a hair). The cell
gives that rate's median, its range over seeds and how many seeds reached an accuracy of 0.99
(Zoology's stopping threshold, the mark of a solved point).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnbench.errors import UserError
from attnbench.report.spread import Spread, draw_band, seeds_of

if TYPE_CHECKING:
    import pandas as pd

SOLVED = 0.99  # an accuracy at which a point counts as solved (Zoology's early-stopping threshold)
POINT = ("task.seq_len", "task.pairs")
NOT_ROWS = ("task.name", *POINT, "task.lr", "task.seed")  # task columns that are not a row of their own


@dataclass(frozen=True)
class Best:
    """One point of one row: the best learning rate (`best_rate`), its accuracy's spread."""

    lr: float
    accuracy: Spread

    @property
    def solved(self) -> int:
        return sum(a >= SOLVED for a in self.accuracy.values)

    def cell(self) -> str:
        acc = self.accuracy.cell(lambda a: f"{a:.3f}")
        seeds = len(self.accuracy.values)
        solved = f" {self.solved}/{seeds}" if seeds > 1 else ""
        return f"{acc}{solved} (lr {self.lr:g})"


def accuracy_of(df: pd.DataFrame) -> pd.Series:
    """Each run's best held-out accuracy; results written before runs recorded it give the
    accuracy of their best-loss evaluation."""
    if "max_accuracy" not in df:
        return df["accuracy"]
    return df["max_accuracy"].fillna(df["accuracy"])


def row_columns(df: pd.DataFrame) -> list[str]:
    """The label, the width and whatever else varies except the point, the rate and the seed."""
    from attnbench.report.table import row_keys

    task = sorted(c for c in df.columns if c.startswith("task.") and c not in NOT_ROWS)
    return row_keys(df, [*task, "device", "dtype"])


def best_rate(group: pd.DataFrame, default_lr: float) -> Best | None:
    """The best learning rate of one row's point: most seeds solved, then the best median and
    the best worst seed (`default_lr`: the task's, for runs that did not set one); None if no
    run is ok."""
    ok = group[group["status"] == "ok"]
    lr = ok["task.lr"].fillna(default_lr) if "task.lr" in ok else default_lr
    ok = ok.assign(acc=accuracy_of(ok), seed=seeds_of(ok), lr=lr)
    ok = ok[ok["acc"].notna()]
    if ok.empty:
        return None
    best = [Best(float(lr), Spread.of(runs.sort_values("seed")["acc"])) for lr, runs in ok.groupby("lr")]
    return max(best, key=lambda b: (b.solved, b.accuracy.median, b.accuracy.low))


def accuracy_table(df: pd.DataFrame, default_lr: float, *, raw: bool = False) -> pd.DataFrame:
    """Rows: `row_columns`; columns: L=…,D=… holding `Best.cell` (raw: the median accuracy),
    or the status where no run of the point is ok."""
    import pandas as pd

    keys = row_columns(df)
    cells: dict[tuple, dict[str, Any]] = {}
    for key, group in df.groupby([*keys, *POINT], dropna=False, sort=True):
        best = best_rate(group, default_lr)
        if best is None:
            cell = group["status"].iloc[0]
        else:
            cell = best.accuracy.median if raw else best.cell()
        cells.setdefault(key[: len(keys)], {})[f"L={key[-2]},D={key[-1]}"] = cell
    table = pd.DataFrame([dict(zip(keys, k, strict=True)) | v for k, v in cells.items()])
    grid = sorted(
        (c for c in table.columns if c.startswith("L=")),
        key=lambda c: tuple(int(x.split("=")[1]) for x in c.split(",")),
    )
    return table[keys + grid].fillna("").rename(columns=lambda c: c.removeprefix("task."))


def plot_accuracy(df: pd.DataFrame, path: str | Path, default_lr: float) -> Path:
    """As Zoology's Figure 2, turned to show the state's limit: held-out accuracy against the
    number of pairs D, one panel per model width, one line per variant at the best learning
    rate of each point (median over seeds, the range a band), the 0.99 mark dashed."""
    from attnbench.report.figures import pyplot, save, with_devices
    from attnbench.report.table import row_name

    plt = pyplot()
    ok = df[df["status"] == "ok"] if "accuracy" in df else df.iloc[0:0]
    if ok.empty:
        raise UserError("no ok MQAR results to plot")
    widths = sorted(ok["task.d_model"].dropna().unique()) if "task.d_model" in ok else [None]
    width = max(4.6 * len(widths), 7.0)  # one panel still fits the title
    fig, axes = plt.subplots(1, len(widths), figsize=(width, 4.4), squeeze=False, sharey=True)
    keys = [k for k in row_columns(ok) if k != "task.d_model"]
    labels = sorted({tuple(k) if isinstance(k, tuple) else (k,) for k, _ in ok.groupby(keys, dropna=False)})
    colors = plt.get_cmap("tab10").colors
    for ax, width in zip(axes[0], widths, strict=True):
        mine = ok if width is None else ok[ok["task.d_model"] == width]
        for key, group in mine.groupby(keys, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            points = []
            for (length, pairs), runs in group.groupby(list(POINT), sort=True):
                best = best_rate(runs, default_lr)
                if best is not None:
                    points.append((int(pairs), int(length), best))
            points.sort()
            name = row_name(keys, key)
            lengths = sorted({length for _, length, _ in points})
            where = f"  (L={lengths[0]})" if len(lengths) == 1 else ""
            color = colors[labels.index(key) % len(colors)]
            draw_band(
                ax,
                [p for p, _, _ in points],
                [b.accuracy for *_, b in points],
                color,
                name + where,
                marker="o",
            )
        ax.axhline(SOLVED, color="grey", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xticks(
            sorted(mine["task.pairs"].unique()), [str(int(p)) for p in sorted(mine["task.pairs"].unique())]
        )
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(with_devices("key-value pairs D", mine))
        ax.set_title(f"d_model = {int(width)}" if width is not None else "")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("held-out query accuracy (best lr; median, range over seeds)")
    fig.suptitle("MQAR: accuracy vs number of key-value pairs, by model width")
    return save(fig, axes[0][-1], path, legend=False)

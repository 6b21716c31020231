"""Several seeds of one quality result: which seed a row is, the median and range a table
shows, and the band a figure draws around the median.

A quality number from one training run is one draw: near a capacity limit or a recall
transition, another seed moves it by more than the gap between two variants. Task tables
therefore show the median over seeds with the range (min–max: with three seeds there is no
better interval to give), and figures draw the median with the range as a band. Results of one
seed (every file written before seeds existed) show as before: the value, no range.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

SEED = "task.seed"
DEFAULT_SEED = 0  # a results row without task.seed ran the task's default seed


def seeds_of(df: pd.DataFrame) -> pd.Series:
    """The seed of each row (the task's `seed`; the default where a row does not name one)."""
    if SEED not in df:
        return pd.Series(DEFAULT_SEED, index=df.index, dtype=int)
    return df[SEED].fillna(DEFAULT_SEED).astype(int)


@dataclass(frozen=True)
class Spread:
    """One measure over seeds: the values in seed order."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[Any]) -> Spread:
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def cell(self, fmt: Callable[[float], str]) -> str:
        """`median (low–high)`, or the value alone for one seed."""
        if len(self.values) == 1:
            return fmt(self.values[0])
        return f"{fmt(self.median)} ({fmt(self.low)}–{fmt(self.high)})"


def draw_band(ax, x: Sequence[float], spreads: Sequence[Spread], color, label: str, **line: Any) -> None:
    """The median as a line with markers, the range over seeds as a shaded band (none for one
    seed)."""
    ax.plot(x, [s.median for s in spreads], color=color, label=label, **line)
    if any(len(s.values) > 1 for s in spreads):
        ax.fill_between(x, [s.low for s in spreads], [s.high for s in spreads], color=color, alpha=0.18, lw=0)


def seed_count(df: pd.DataFrame) -> int:
    """How many seeds the rows hold."""
    return int(seeds_of(df).nunique()) if len(df) else 0

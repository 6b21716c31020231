"""The pieces of an HTML report: figures (PNG, embedded as data), tables of cells, and the
section a task contributes. The page itself is `attnbench.report.html`."""

from __future__ import annotations

import base64
import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from attnbench.errors import UserError
from attnbench.results.store import STATUSES

if TYPE_CHECKING:
    from attnbench.tasks import Task


@dataclass(frozen=True)
class Cell:
    text: str
    css: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Figure:
    title: str
    data: str  # base64 PNG


@dataclass(frozen=True)
class Section:
    """Figures and tables under one heading of the report."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def cell(value) -> Cell:
    """A value as a table cell: numbers right-aligned, statuses coloured, the rest as text."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return Cell("")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(f"{value:.4g}" if isinstance(value, float) else str(value), "num")
    text = str(value)
    return Cell(text, f"status-{text}" if text in STATUSES else "")


def frame_table(title: str, df: pd.DataFrame) -> Table:
    return Table(
        title, [str(c) for c in df.columns], [[cell(v) for v in row] for row in df.itertuples(index=False)]
    )


def png(draw: Callable[[Path], object]) -> str | None:
    """`draw(path)` rendered to a base64 PNG; None when there is nothing to draw (a UserError)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        try:
            draw(path)
        except UserError:
            return None
        return base64.b64encode(path.read_bytes()).decode()


def task_section(task: type[Task], df: pd.DataFrame) -> Section:
    """A task's results as the report shows them by default: its figure, its table, and the
    status counts with the cases that did not end ok."""
    figures = []
    if task.has_figure():
        data = png(lambda p: task.figure(df, p))
        if data:
            figures.append(Figure(f"{task.name}: {task.description}", data))
    tables = []
    with contextlib.suppress(UserError):  # nothing the table can show
        tables.append(frame_table(f"{task.name}: {task.title}", task.table(df)))
    tables.append(status_table(f"{task.name}: ", df))
    return Section(f"Task: {task.name}", figures, tables)


def status_table(prefix: str, df: pd.DataFrame) -> Table:
    """The status counts in the title, and only the cases that did not end `ok`, with why."""
    from attnbench.report.table import status_counts

    bad = df[df["status"] != "ok"]
    title = f"{prefix}{status_counts(df)}" + ("; the cases that did not end ok" if len(bad) else "")
    return frame_table(title, bad[["label", "status", "error"]])

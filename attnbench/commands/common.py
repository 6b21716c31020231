"""What several commands share: the consoles, plugin loading, row filters, the task table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from attnbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

# piped output is not squeezed to 80 columns: tables stay one row per line
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


def warn(message: str) -> None:
    """One line, never wrapped: a file:line in it stays whole, for people and for grep."""
    err.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def positive_number(text: str) -> float:
    """argparse type of a timeout: a finite number above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


def positive_integer(text: str) -> int:
    """argparse type of a count: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


def non_negative_number(text: str) -> float:
    """argparse type of a limit where 0 means none: a finite number, 0 or above."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative (0 means no limit)")
    return value


def probability(text: str) -> float:
    """argparse type of a level such as α: a number above 0 and below 1."""
    value = _finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_plugin_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (a module name or a .py file) for its variants and tasks too (repeatable)",
    )


def load_plugins(names: list[str]) -> None:
    """Import plugins here and record them for subprocess workers; then discover everything."""
    from attnbench.discovery import add_plugins
    from attnbench.registry import REGISTRY
    from attnbench.tasks import TASKS

    add_plugins(names)
    REGISTRY.discover()
    TASKS.discover()


def load(paths: list[Path], *, runs: bool = False) -> pd.DataFrame:
    """The results in `paths` (with `runs`, every file's records, see `results.runs`); a
    UserError when they hold none (an empty file is not a filter that matched nothing)."""
    from attnbench.results import load_results
    from attnbench.results.runs import load_runs

    df = load_runs(paths, on_warning=warn) if runs else load_results(*paths, on_warning=warn)
    if df.empty:
        names = ", ".join(str(p) for p in paths)
        raise UserError(f"{names} {'holds' if len(paths) == 1 else 'hold'} no results")
    return df


def filter_rows(df: pd.DataFrame, conditions: list[str]) -> pd.DataFrame:
    """Rows where each COL=VALUE holds, comparing as text (so causal=True and seq_len=512 work)."""
    for cond in conditions:
        col, sep, value = cond.partition("=")
        if not sep or col not in df:
            known = ", ".join(c for c in df.columns if not c.startswith("latency_"))
            raise UserError(f"--where {cond!r}: expected COL=VALUE with COL one of {known}")
        df = df[df[col].astype(str) == value]
    if df.empty:
        raise UserError(f"no results match --where {' '.join(conditions)}")
    return df


def unsupported_note(df: pd.DataFrame, shown: bool) -> str:
    """` · not shown, could not run here: …` for variants whose every case is unsupported."""
    skipped = sorted(set(df.loc[df["status"] == "unsupported", "label"]))
    hidden = [label for label in skipped if (df.loc[df["label"] == label, "status"] == "unsupported").all()]
    if shown or not hidden:
        return ""
    return f" · not shown, could not run here: {', '.join(hidden)} (--all shows them)"


def print_task_table(
    df: pd.DataFrame, name: str, fmt: str, options: dict, *, title: str = "", unsupported: bool = False
) -> None:
    """The task's own table of its results (variants that never ran left out unless
    `unsupported`), then the status counts."""
    from attnbench.report.table import hide_unsupported, status_counts
    from attnbench.report.terminal import print_frame
    from attnbench.tasks import task_of_results

    task = task_of_results(name)
    table = task.table(df if unsupported else hide_unsupported(df), raw=fmt == "csv", **options)
    print_frame(console, table, f"{title + ': ' if title else ''}{task.title or name}", fmt)
    if fmt == "table":
        console.print(status_counts(df) + unsupported_note(df, unsupported))


def task_options(args: argparse.Namespace, name: str) -> dict:
    """The options of task `name` given on the command line (`show --threshold …`)."""
    from attnbench.tasks import task_of_results

    return {key: getattr(args, key, None) for key in task_of_results(name).options}


def write_report(df: pd.DataFrame, out: Path, title: str | None) -> Path:
    from attnbench.report.html import write_report as write

    suites = ", ".join(sorted(df["suite"].dropna().astype(str).unique())) or "results"
    return write(df, out, title=title or f"attnbench report: {suites}")

"""Tables in the terminal: every command prints a DataFrame through `print_frame`, as a rich
table (statuses coloured, every string escaped), Markdown or CSV."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

STATUS_STYLES = {"oom": "red", "crash": "red", "error": "red", "timeout": "yellow", "unsupported": "dim"}
FORMATS = ("table", "csv", "md")


def status_style(text: str) -> str | None:
    return STATUS_STYLES.get(text)


def rich_table(
    table: pd.DataFrame,
    title: str,
    *,
    style: Callable[[str], str | None] = status_style,
    right: Callable[[str], bool] = lambda column: column.startswith("N="),
) -> Table:
    """`table` as a rich Table; `style(cell text)` colours a cell, `right(column)` aligns it."""
    out = Table(title=escape(title), title_justify="left", header_style="bold")
    for col in table.columns:
        out.add_column(escape(str(col)), justify="right" if right(str(col)) else "left", overflow="fold")
    for _, row in table.iterrows():
        cells = []
        for value in row:
            text = escape(str(value))
            colour = style(str(value))
            cells.append(f"[{colour}]{text}[/]" if colour else text)
        out.add_row(*cells)
    return out


def print_frame(
    console: Console,
    table: pd.DataFrame,
    title: str,
    fmt: str = "table",
    *,
    style: Callable[[str], str | None] = status_style,
    right: Callable[[str], bool] = lambda column: column.startswith("N="),
) -> None:
    """Print `table` with its title: a rich table, Markdown (`md`) or CSV (`csv`, no title)."""
    if fmt == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif fmt == "md":
        print(f"{title}\n")
        print(table.to_markdown(index=False))
    else:
        console.print(rich_table(table, title, style=style, right=right))

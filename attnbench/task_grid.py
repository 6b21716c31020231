"""A suite's `[task]` table: the task's name and parameters, lists swept as a product and
`points` varying together, expanded once (when the suite is parsed) to the grid of task
parameters and the case shape each point fixes."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnbench.errors import UserError
from attnbench.tasks import get_task


@dataclass(frozen=True)
class TaskGrid:
    """A suite's [task]: the task's name and, for each point of its grid, the task's
    parameters and the case shape they fix (expanded and checked once, when parsed)."""

    name: str
    points: tuple[tuple[dict[str, Any], dict[str, int]], ...]

    def with_param(self, key: str, value: Any) -> TaskGrid:
        """Every point with the task parameter `key` set to `value` (a command-line override,
        e.g. `run --corpus`); a UserError if the task has no such parameter."""
        task = get_task(self.name)
        points = []
        for params, _ in self.points:
            params = {**params, key: value}
            task.resolve_params(params)
            points.append((params, task.shape(params)))
        return TaskGrid(self.name, tuple(points))


def parse_task(table: Any, fail: Callable[[str, str], UserError]) -> TaskGrid:
    """[task]: `name` and the task's parameters, each a value or a list of values (swept), and
    `points`, tables of parameters that vary together; expanded to the task's grid."""
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise fail("task", '[task] needs name = "<task>" (e.g. "retrieval")')
    try:
        task = get_task(table["name"])
    except UserError as e:
        raise fail("name", str(e)) from None
    swept = {k: v if isinstance(v, list) else [v] for k, v in table.items() if k not in ("name", "points")}
    points = table.get("points", [{}])  # no points: one empty point, the swept grid alone
    if "points" in table and not (
        isinstance(points, list) and points and all(isinstance(p, dict) and p for p in points)
    ):
        raise fail("points", "[task] points must be a list of tables, e.g. [{seq_len = 64, pairs = 4}]")
    for point in points:
        clash = sorted(set(point) & set(swept))
        if clash:
            raise fail("points", f"task parameter {clash[0]!r} is set both in points and on its own")
    for key, values in swept.items():
        if not values:
            raise fail(key, f"task parameter {key!r} is empty")
    # each value alone first, so an error names its line; a value that is wrong only against the
    # defaults of the others (sliding_stride beyond the default seq_len) is checked in the grid
    context = {**{k: v[0] for k, v in swept.items()}, **points[0]}
    for key, values in swept.items():
        for v in values:
            try:
                task.resolve_params({key: v})
            except UserError as e:
                try:
                    task.resolve_params({**context, key: v})
                except UserError:
                    raise fail(key, str(e)) from None
    names = sorted(swept)
    grid = []
    for point, values in itertools.product(points, itertools.product(*(swept[n] for n in names))):
        params = {**dict(zip(names, values, strict=True)), **point}
        try:
            grid.append((params, task.shape(params)))
        except UserError as e:
            raise fail("points" if point else "task", str(e)) from None
    return TaskGrid(task.name, tuple(grid))

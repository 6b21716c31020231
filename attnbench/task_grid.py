"""A suite's `[task]` table: the task's name and parameters, lists swept as a product,
`points` varying together and `seeds` (each point trained once per seed), expanded once (when
the suite is parsed) to the grid of task parameters and the case shape each point fixes."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from attnbench.errors import UserError
from attnbench.tasks import Task, get_task


@dataclass(frozen=True)
class TaskGrid:
    """A suite's [task]: the task's name and, for each point of its grid, the task's
    parameters and the case shape they fix (expanded and checked once, when parsed)."""

    name: str
    points: tuple[tuple[dict[str, Any], dict[str, int]], ...]
    seeds: tuple[int, ...] = ()  # each point once per seed (the task's `seed`); () = as the points say

    def runs(self) -> tuple[tuple[dict[str, Any], dict[str, int]], ...]:
        """The points, each once per seed: the training runs the grid stands for."""
        if not self.seeds:
            return self.points
        return tuple(
            ({**params, "seed": seed}, shape) for params, shape in self.points for seed in self.seeds
        )

    def with_seeds(self, seeds: Iterable[int]) -> TaskGrid:
        """The grid trained once per seed in `seeds` (replacing the suite's own `seeds`; `run
        --seeds N`); a UserError where the suite sets the task's `seed` itself."""
        seeds = tuple(seeds)
        check_seeds(get_task(self.name), seeds, lambda _, msg: UserError(msg))
        if any("seed" in params for params, _ in self.points):
            raise UserError(f"task {self.name}: the suite sets seed in [task]; seeds would repeat it")
        return dataclasses.replace(self, seeds=seeds)

    def with_param(self, key: str, value: Any) -> TaskGrid:
        """Every point with the task parameter `key` set to `value` (a command-line override,
        e.g. `run --corpus`); a UserError if the task has no such parameter."""
        task = get_task(self.name)
        points = []
        for params, _ in self.points:
            params = {**params, key: value}
            task.resolve_params(params)
            points.append((params, task.shape(params)))
        return dataclasses.replace(self, points=tuple(points))


def check_seeds(task: type[Task], seeds: Any, fail: Callable[[str, str], UserError]) -> None:
    """`seeds`: a non-empty list of distinct non-negative integers, for a task that is seeded."""
    if "seed" not in task.params:
        raise fail("seeds", f"task {task.name} has no seed parameter: it trains nothing to repeat")
    if not (
        isinstance(seeds, (list, tuple))
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        and len(set(seeds)) == len(seeds)
    ):
        raise fail(
            "seeds", f"seeds must be a list of distinct non-negative integers, e.g. [0, 1, 2], not {seeds!r}"
        )


def parse_task(table: Any, fail: Callable[[str, str], UserError]) -> TaskGrid:
    """[task]: `name` and the task's parameters, each a value or a list of values (swept),
    `points`, tables of parameters that vary together, and `seeds`, the seeds every point is
    trained with (the task's `seed` parameter, once each); expanded to the task's grid."""
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise fail("task", '[task] needs name = "<task>" (e.g. "retrieval")')
    try:
        task = get_task(table["name"])
    except UserError as e:
        raise fail("name", str(e)) from None
    reserved = ("name", "points", "seeds")
    swept = {k: v if isinstance(v, list) else [v] for k, v in table.items() if k not in reserved}
    points = check_points(table, swept, fail, "[task]", "{seq_len = 64, pairs = 4}")
    seeds = table.get("seeds", [])
    if "seeds" in table:
        check_seeds(task, seeds, fail)
        if "seed" in swept or any("seed" in point for point in points):
            raise fail(
                "seeds",
                "[task] sets both seed and seeds: keep one (seeds = [0, 1, 2] trains each point per seed)",
            )
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
    grid = []
    for params in product_grid(swept, points):
        try:
            grid.append((params, task.shape(params)))
        except UserError as e:
            raise fail("points" if "points" in table else "task", str(e)) from None
    return TaskGrid(task.name, tuple(grid), tuple(seeds))


def check_points(
    table: dict[str, Any],
    swept: dict[str, list[Any]],
    fail: Callable[[str, str], UserError],
    where: str,
    example: str,
) -> list[dict[str, Any]]:
    """A table's `points` (parameters that vary together), checked: a non-empty list of
    non-empty tables, none setting a parameter the table also sets on its own. No points:
    one empty point, the swept grid alone."""
    if "points" not in table:
        return [{}]
    points = table["points"]
    if not (isinstance(points, list) and points and all(isinstance(p, dict) and p for p in points)):
        raise fail("points", f"{where} points must be a list of tables, e.g. [{example}]")
    for point in points:
        clash = sorted(set(point) & set(swept))
        if clash:
            raise fail("points", f"parameter {clash[0]!r} is set both in points and on its own")
    return points


def product_grid(swept: dict[str, list[Any]], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point crossed with the product of the swept lists, point by point."""
    names = sorted(swept)
    return [
        {**dict(zip(names, values, strict=True)), **point}
        for point, values in itertools.product(points, itertools.product(*(swept[n] for n in names)))
    ]

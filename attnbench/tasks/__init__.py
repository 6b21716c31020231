"""Quality workloads: tasks that train the registry's own variants and report what they learn.

A task is one file with one class registered with `@register_task`, found like a variant
(every module under `attnbench/tasks/`, the `attnbench.tasks` entry-point group, and
`--plugin` modules). A suite selects it with a `[task]` table (`name = "retrieval"` plus the
task's parameters, a list being a swept axis). The class owns everything about the task:

- `params` and their defaults, `counts` (positive integers), `resolve_params` for other rules;
- `shape`: the case axes its parameters fix (batch, heads, sequence length, head size);
- `run`: train and evaluate one variant, returning the result row's metrics;
- `unseeded`: its parameters that say when to stop or how much to evaluate, which do not
  change the run's seed (so raising `max_steps` continues the same run);
- `title`, `table`, `figure` and `options`: what `attnbench show` prints and draws;
- `report_section`: what the HTML report shows (by default the figure, the table and the
  cases that did not run); `quality` for the speed–quality frontier.

Nothing outside the task's file names it: `show`, the report and the frontier loop over
the registered tasks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from attnbench.cases import Case
from attnbench.discovery import Catalog
from attnbench.errors import UserError, check_known
from attnbench.registry import Variant

if TYPE_CHECKING:
    import pandas as pd

    from attnbench.report.sections import Section


@dataclass(frozen=True)
class Option:
    """An option of a task's table and figure, offered by `attnbench show --NAME`."""

    type: type
    default: Any
    help: str


class Task:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    title: ClassVar[str] = ""  # heading of its table: what the cells hold
    params: ClassVar[Mapping[str, Any]] = {}  # the task's parameters and their defaults
    counts: ClassVar[tuple[str, ...]] = ()  # parameters that must be positive integers
    unseeded: ClassVar[tuple[str, ...]] = ()  # parameters that do not change the seed
    mode: ClassVar[str] = "fwd+bwd"  # the case mode: training, or "decode"
    options: ClassVar[Mapping[str, Option]] = {}  # of `table` and `figure`
    quality: ClassVar[Mapping[str, bool]] = {}  # frontier measures -> larger is better

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `given`; an unknown name or a bad count is a UserError.
        Subclasses add their own rules after calling this."""
        check_known(f"task {cls.name}", given, cls.params)
        p = {**cls.params, **given}
        for key in cls.counts:
            if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 1:
                raise UserError(f"task {cls.name}: {key} must be a positive integer, not {p[key]!r}")
        return p

    @classmethod
    def shape(cls, params: Mapping[str, Any]) -> dict[str, int]:
        """The case axes the task fixes: batch, heads, seq_len, d_head."""
        raise NotImplementedError

    @classmethod
    def run(cls, variant: type[Variant], case: Case, params: dict[str, Any]) -> dict[str, Any]:
        """Train and evaluate `variant` on this case (`params`: the task's, resolved); returns
        the result row's metrics."""
        raise NotImplementedError

    @classmethod
    def run_seed(cls, case: Case, params: Mapping[str, Any]) -> int:
        """The seed of a training run: from the variant, its parameters, the dtype and the
        task's parameters except `unseeded`, so raising `max_steps` continues the same run
        (same initialisation, same batches) and the `seed` parameter draws another."""
        what = {
            "variant": case.variant,
            "params": dict(case.params),
            "dtype": case.dtype,
            "task": {k: v for k, v in params.items() if k not in cls.unseeded},
        }
        blob = json.dumps(what, sort_keys=True, default=str)
        return int(hashlib.sha1(blob.encode()).hexdigest()[:8], 16)

    # --- what its results look like ------------------------------------------------------
    @classmethod
    def table(cls, df: pd.DataFrame, *, raw: bool = False, **options: Any) -> pd.DataFrame:
        """Its results as one table (`raw`: numbers unformatted, for CSV). By default one row
        per case: the label, the status and every scalar metric the task recorded."""
        from attnbench.report.table import generic_task_table

        return generic_task_table(df, raw=raw)

    @classmethod
    def option(cls, options: Mapping[str, Any], name: str) -> Any:
        """The value of one of its `options`: as given, else its default."""
        value = options.get(name)
        return cls.options[name].default if value is None else value

    @classmethod
    def figure(cls, df: pd.DataFrame, path: str | Path, **options: Any) -> Path:
        """Draw its results to `path` (.png or .svg). A task with no figure says so."""
        raise UserError(f"task {cls.name} draws no figure (--plot): its results are a table")

    @classmethod
    def has_figure(cls) -> bool:
        return cls.figure.__func__ is not Task.figure.__func__  # type: ignore[attr-defined]

    @classmethod
    def report_section(cls, df: pd.DataFrame) -> Section:
        """What the HTML report shows of this task's results."""
        from attnbench.report.sections import task_section

        return task_section(cls, df)

    @classmethod
    def quality_of(cls, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Its quality measures (`quality`) by label, each with the row's `variant`, for the
        speed–quality frontier; {} for a task that measures no quality."""
        return {}


TASK_AXES = ("batch", "heads", "seq_len", "d_head", "mode")  # fixed by a task, not swept


def case_shape(batch: int, heads: int, seq_len: int, d_head: int) -> dict[str, int]:
    """What `Task.shape` returns: the case axes a task fixes."""
    return {"batch": batch, "heads": heads, "seq_len": seq_len, "d_head": d_head}


T = TypeVar("T", bound=type[Task])
TASKS: Catalog[type[Task]] = Catalog("task", ("attnbench.tasks",), "attnbench.tasks")


def register_task(name: str) -> Callable[[T], T]:
    def decorate(cls: T) -> T:
        cls.name = name
        if not cls.__dict__.get("description"):
            cls.description = (cls.__doc__ or "").strip().split("\n", 1)[0]
        TASKS.add(name, cls, same=lambda a, b: a.__qualname__ == b.__qualname__)
        return cls

    return decorate


def get_task(name: str) -> type[Task]:
    return TASKS.get(name)


def all_tasks() -> list[type[Task]]:
    return [cls for _, cls in sorted(TASKS.items().items())]


def task_of_results(name: str) -> type[Task]:
    """The registered task `name`, or, for results of a task not registered here (a plugin
    not loaded), a stand-in that shows them with the generic table."""
    if name in TASKS:
        return TASKS.get(name)
    return type(f"Unregistered_{name}", (Task,), {"name": name, "description": "not registered here"})

"""Quality workloads: tasks that train the registry's own variants and report what they learn.

A task is one class registered with `@register_task`; a suite selects it with a `[task]` table
(`name = "retrieval"` plus the task's parameters, a list being a swept axis). The task sets the
case's shape (batch, heads, sequence length, head size) from its parameters, and its `run`
returns the result row's metrics.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.registry import Variant


class Task:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Any]] = {}  # the task's parameters and their defaults
    counts: ClassVar[tuple[str, ...]] = ()  # parameters that must be positive integers
    mode: ClassVar[str] = "fwd+bwd"  # the case mode: training, or "decode"

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `given`; an unknown name or a bad count is a UserError.
        Subclasses add their own rules after calling this."""
        unknown = set(given) - set(cls.params)
        if unknown:
            known = ", ".join(sorted(cls.params))
            raise UserError(
                f"task {cls.name} has no parameter {sorted(unknown)[0]!r} (its parameters: {known})"
            )
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


TASK_AXES = ("batch", "heads", "seq_len", "d_head", "mode")  # fixed by a task, not swept


def case_shape(batch: int, heads: int, seq_len: int, d_head: int) -> dict[str, int]:
    """What `Task.shape` returns: the case axes a task fixes."""
    return {"batch": batch, "heads": heads, "seq_len": seq_len, "d_head": d_head}


T = TypeVar("T", bound=type[Task])
TASKS: dict[str, type[Task]] = {}
MODULES = (
    "attnbench.tasks.retrieval",
    "attnbench.tasks.mqar",
    "attnbench.tasks.extrapolation",
    "attnbench.tasks.decode",
    "attnbench.tasks.convert",
)


def register_task(name: str) -> Callable[[T], T]:
    def decorate(cls: T) -> T:
        cls.name = name
        if not cls.__dict__.get("description"):
            cls.description = (cls.__doc__ or "").strip().split("\n", 1)[0]
        TASKS[name] = cls
        return cls

    return decorate


def get_task(name: str) -> type[Task]:
    for module in MODULES:
        importlib.import_module(module)
    if name not in TASKS:
        hint = difflib.get_close_matches(name, list(TASKS), n=1)
        tip = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UserError(f"unknown task {name!r}{tip}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]

"""An unregistered attention — a function `fn(q, k, v, causal=False)`, an `nn.Module` instance,
or an `nn.Module` class — as a Variant, so `attnbench.bench` measures it with the harness a
registered variant gets (timing, exact CPU memory, error against a float64 oracle when asked).

In this process the wrapper holds the object itself. A subprocess worker cannot receive it, so
it imports it by `module:qualname`: the parent names its targets in `ATTNBENCH_TARGETS` and
adds `attnbench.wrap_plugin` to the plugins, whose import registers them in the worker.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from attnbench.errors import Unsupported, UserError
from attnbench.registry import REGISTRY, Variant

if TYPE_CHECKING:
    from attnbench.cases import Case

TARGETS_ENV = "ATTNBENCH_TARGETS"  # JSON: name -> {"path": "module:qualname", "reference": key}
PLUGIN = "attnbench.wrap_plugin"


class Wrapped(Variant):
    """An attention function or module measured as it is (no parameters to sweep)."""

    target: ClassVar[Any] = None  # the function, module instance or module class
    takes_causal: ClassVar[bool] = False  # it has a `causal` keyword; without one, non-causal only
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        target = type(self).target
        if isinstance(target, type):  # a module class: one built per case, with what it takes
            takes = inspect.signature(target).parameters
            self.inner = target(**{k: v for k, v in (("heads", heads), ("d_head", d_head)) if k in takes})
        elif isinstance(target, nn.Module):  # a copy: the harness casts and moves it per case
            self.inner = copy.deepcopy(target)
        else:
            self.fn = target

    def check(self, case: Case) -> None:
        if case.causal and not self.takes_causal:
            raise Unsupported(f"{self.name} takes no `causal` keyword: it runs the non-causal cases only")
        super().check(case)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        call = self.inner if hasattr(self, "inner") else self.fn
        return call(q, k, v, causal=causal) if self.takes_causal else call(q, k, v)


def _takes_causal(target: Any) -> bool:
    fn = target.forward if isinstance(target, (type, nn.Module)) else target
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "causal" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def name_of(target: Any) -> str:
    """`my_attention` for a function or class, the class's name for a module instance."""
    obj = target if isinstance(target, type) or not isinstance(target, nn.Module) else type(target)
    return getattr(obj, "__name__", None) or type(target).__name__


def wrap(target: Any, name: str, *, reference: str | None = None) -> type[Wrapped]:
    """A Variant class measuring `target` as variant `name` (checked against the float64
    oracle `reference`, e.g. "softmax", when given). `attnbench.bench` registers it for one call."""
    if not callable(target):
        raise UserError(f"bench: {target!r:.60} is neither a variant name, a function nor an nn.Module")
    if reference is not None:
        from attnbench import reference as oracles

        oracles.get(reference)  # an unknown key is a UserError now, not a status per case
    causal = _takes_causal(target)
    attrs = {
        "target": staticmethod(target),  # read as it is, never bound as a method
        "takes_causal": causal,
        "causal_modes": (False, True) if causal else (False,),
        "reference": reference or "",
        "description": f"unregistered {name_of(target)} (attnbench.bench)",
        "__module__": __name__,
    }
    cls = type(f"Wrapped_{name}", (Wrapped,), attrs)
    cls.__qualname__ = f"Wrapped[{name}]"
    return cls


def import_path(target: Any) -> str:
    """`module:qualname` a worker process imports `target` by; a UserError saying why when it
    cannot (defined in a notebook or script, inside a function, or not found where it says)."""
    obj = target if isinstance(target, type) or not isinstance(target, nn.Module) else None
    module = getattr(obj if obj is not None else type(target), "__module__", None)
    qualname = getattr(obj, "__qualname__", None) if obj is not None else _attribute_of(target, module)
    what = name_of(target)
    if module in (None, "__main__", "__mp_main__") or not qualname or "<locals>" in qualname:
        where = "in a notebook or script (__main__)" if module in ("__main__", "__mp_main__") else "here"
        raise UserError(
            f"bench(executor='subprocess'): {what} is defined {where}, which a worker process cannot "
            "import: define it at the top level of a module on sys.path, or use executor='inline'"
        )
    path = f"{module}:{qualname}"
    try:
        found = resolve(path)
    except (ImportError, AttributeError) as e:
        raise UserError(f"bench(executor='subprocess'): cannot import {what} as {path}: {e}") from None
    if found is not target:
        raise UserError(f"bench(executor='subprocess'): {path} is not the {what} given (redefined since?)")
    return path


def _attribute_of(instance: nn.Module, module: str | None) -> str | None:
    """The module-level name an nn.Module instance is bound to in the module of its class."""
    mod = importlib.import_module(module) if module and module not in ("__main__", "__mp_main__") else None
    return next((k for k, v in vars(mod).items() if v is instance), None) if mod else None


def resolve(path: str) -> Any:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def register_from_env() -> None:
    """Register the targets the parent named in ATTNBENCH_TARGETS (in a subprocess worker)."""
    for name, spec in json.loads(os.environ.get(TARGETS_ENV) or "{}").items():
        # the same wrapper again (the plugin imported twice) is fine: its qualname is its name
        REGISTRY.register(name)(wrap(resolve(spec["path"]), name, reference=spec["reference"]))

"""The variant registry: one base class, one decorator, discovery by walking the package.

Adding a variant is one file with one class::

    from attnbench.registry import Variant, register

    @register("softmax.mine")
    class Mine(Variant):
        family = "softmax"          # optional: defaults to the name's first part
        reference = "softmax"       # the float64 oracle it is checked against
        def forward(self, q, k, v, *, causal=False):
            ...

Dropped anywhere under `attnbench/variants/`, it is found by `Registry.discover` (no central
list to edit) and appears in `attnbench list`, in every suite that selects its name or family,
and in every registry-wide test. Variants outside the package load from the modules named in
`ATTNBENCH_PLUGINS` (comma-separated modules or .py files; `--plugin` sets it) or the
`attnbench.variants` entry-point group (see `attnbench.discovery`).
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from attnbench.discovery import PLUGINS_ENV, Catalog
from attnbench.errors import Unsupported, UserError, check_known, did_you_mean

if TYPE_CHECKING:
    from attnbench.cases import Case, Shape

__all__ = ["PLUGINS_ENV", "REGISTRY", "Availability", "Registry", "Variant", "register"]


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Variant(nn.Module):
    """Base of every attention implementation. Tensors are (batch, heads, seq, d_head).

    Class attributes are the variant's metadata; `forward` is the computation. Subclasses
    override `unavailable_reason` (a package or backend missing here) and `check` (a case it
    cannot run) rather than failing inside `forward`.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Any]] = {}  # sweepable parameters and their defaults
    # what a parameter may be, checked when a suite is parsed: of its default's type, one of
    # `param_choices` where given, at least `param_minimum` where given
    param_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    param_minimum: ClassVar[Mapping[str, int]] = {}
    causal_modes: ClassVar[tuple[bool, ...]] = (False, True)
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "float64", "bfloat16", "float16")
    modes: ClassVar[tuple[str, ...]] = ("fwd", "fwd+bwd")
    # what decoding carries between tokens (init_state/step): "" none, "constant" (a fixed-size
    # recurrent state), "window" (the last w keys), "segments" (a segment and its memory),
    # "cache" (every key so far: grows with the output)
    decode_state: ClassVar[str] = ""
    compiled: ClassVar[bool] = False  # uses torch.compile: the harness guards recompilation
    reference: ClassVar[str] = ""  # key of its float64 oracle in attnbench.reference
    flops_formula: ClassVar[str] = ""  # the count `flops` implements, for `attnbench list`
    error_scale: ClassVar[float] = 1.0  # its rounding error relative to a plain matmul path (tests)
    approximates: ClassVar[bool] = False  # approximates its oracle (rel_err is its approximation error)

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__()
        self.heads = heads
        self.d_head = d_head
        self.hparams = self.resolve_params(params)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        raise NotImplementedError

    # --- metadata -------------------------------------------------------------------------
    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `given`; an unknown name or a value the variant cannot take
        (see `param_choices`, `param_minimum`) is a UserError."""
        check_known(cls.name, given, cls.params)
        for key, value in given.items():
            problem = param_problem(
                value, cls.params[key], cls.param_choices.get(key), cls.param_minimum.get(key)
            )
            if problem:
                raise UserError(f"{cls.name}: {key} {problem}")
        return {**cls.params, **given}

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int | None:
        """Floating-point operations of one call; None when the variant declares no formula."""
        return None

    @classmethod
    def min_bytes(cls, shape: Shape, *, mode: str, itemsize: int) -> int:
        """Fewest bytes one call must move: q, k, v read and o written (fwd); the backward
        also reads q, k, v, o, dO and writes dq, dk, dv. Sets the memory-bound floor."""
        tensor = shape.batch * shape.heads * shape.seq_len * shape.d_head * itemsize
        return tensor * (4 if mode == "fwd" else 12)

    @classmethod
    def density(cls, seq_len: int, *, causal: bool, params: Mapping[str, Any]) -> float | None:
        """Share of the (query, key) pairs of full attention it computes; None when dense."""
        return None

    def cache_bytes(self, shape: Shape, itemsize: int) -> int | None:
        """Bytes of state it carries between segments or decoding steps (a K/V cache); None if none."""
        return None

    def oracle_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for this variant's oracle beyond q, k, v, causal and rows: the
        oracle's view of the variant's own parameters (a feature map, a learned β)."""
        return {}

    def oracle_twin(self) -> Variant:
        """A frozen float64 copy in eval mode, for oracles that recompute the variant's learned
        parts (a feature map, β, a position table). Take it after the call it checks."""
        twin = copy.deepcopy(self).double().eval()
        twin.requires_grad_(False)
        return twin

    def d_dot(self) -> int | None:
        """Size of the per-head state a query reads (fast-weight memory); None if unbounded."""
        return None

    @classmethod
    def training_caveat(cls, params: Mapping[str, Any]) -> str | None:
        """Why a model trained with these parameters is expected to learn badly (a known
        mismatch, kept runnable for ablations), or None; `run` warns on a task suite."""
        return None

    # --- availability -----------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        """Why this variant cannot run on `device` here (package missing, backend absent)."""
        return None

    @classmethod
    def available(cls, device: str = "cpu") -> Availability:
        return _availability(cls, device)

    def check(self, case: Case) -> None:
        """Raise `Unsupported` for a case this variant cannot run."""
        if case.dtype not in self.dtypes:
            raise Unsupported(f"{self.name} does not support {case.dtype}")
        if case.causal not in self.causal_modes:
            raise Unsupported(f"{self.name} has no {'causal' if case.causal else 'non-causal'} form")
        if case.mode == "decode":
            if not self.decode_state:
                raise Unsupported(f"{self.name} has no decoding form (no recurrent state or cache)")
        elif case.mode not in self.modes:
            raise Unsupported(f"{self.name} does not support mode {case.mode}")

    # --- decoding: one token at a time ---------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        raise Unsupported(f"{self.name} has no decoding form (no recurrent state or cache)")

    def step(self, state: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """One token per sequence: q, k, v (B, H, D) -> its output (B, H, D) and the state after it
        (causal: the token reads itself and everything before it)."""
        raise Unsupported(f"{self.name} has no decoding form (no recurrent state or cache)")

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """A prompt (B, H, P, D) -> its causal output and the state after it. Here token by
        token; a variant with a faster way to build its state overrides this."""
        state = self.init_state(q.shape[0], q.device, q.dtype)
        outs = []
        for t in range(q.shape[2]):
            out, state = self.step(state, q[:, :, t], k[:, :, t], v[:, :, t])
            outs.append(out)
        return torch.stack(outs, 2), state


def param_problem(
    value: Any, default: Any, choices: tuple[Any, ...] | None, minimum: int | None
) -> str | None:
    """Why `value` cannot be a parameter whose default is `default`, or None."""
    kind = type(default)
    if default is not None:
        numeric = kind in (int, float) and isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (type(value) is kind or (kind is float and numeric)):
            return f"must be {TYPE_WORDS.get(kind, kind.__name__)}, not {value!r:.60}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, not {value}"
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, not {value!r:.60}"
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        return f"must be at least {minimum}, not {value!r}"
    return None


TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}

_AVAILABILITY: dict[tuple[type, str], Availability] = {}


def _availability(cls: type[Variant], device: str) -> Availability:
    """Lazy and cached per (class, device): probes may import packages or touch a GPU."""
    key = (cls, device)
    if key not in _AVAILABILITY:
        if device not in cls.devices:
            result = Availability(False, f"runs on {', '.join(cls.devices)} only")
        elif device == "cuda" and not torch.cuda.is_available():
            result = Availability(False, "no CUDA device here")
        else:
            reason = cls.unavailable_reason(device)
            result = Availability(reason is None, reason or "")
        _AVAILABILITY[key] = result
    return _AVAILABILITY[key]


V = TypeVar("V", bound=type[Variant])


class Registry(Catalog[type[Variant]]):
    """Name -> Variant class. Filled by `register` as variant modules are imported."""

    def __init__(self, packages: tuple[str, ...] = ("attnbench.variants",)) -> None:
        super().__init__("variant", packages, "attnbench.variants")

    def register(self, name: str, *, family: str | None = None) -> Callable[[V], V]:
        def decorate(cls: V) -> V:
            if not (isinstance(cls, type) and issubclass(cls, Variant)):
                raise TypeError(f"@register({name!r}) expects a Variant subclass, got {cls!r}")
            cls.name = name
            cls.family = family or cls.__dict__.get("family") or name.split(".", 1)[0]
            if not cls.__dict__.get("description"):
                cls.description = (cls.__doc__ or "").strip().split("\n", 1)[0]
            # a module imported twice (a plugin by path, then by name) registers an equal class
            self.add(name, cls, same=lambda a, b: a.__qualname__ == b.__qualname__)
            return cls

        return decorate

    def unregister(self, name: str) -> None:
        self.remove(name)

    def all(self) -> list[type[Variant]]:
        return [cls for _, cls in sorted(self.items().items())]

    def families(self) -> list[str]:
        return sorted({v.family for v in self.all()})

    def select(self, patterns: str | list[str]) -> list[type[Variant]]:
        """Variants matching any pattern: an exact name, a glob (`softmax.*`) or a family
        (`softmax`). Patterns may be comma-separated. A pattern matching nothing is an error."""
        if isinstance(patterns, str):
            patterns = [patterns]
        wanted = [p.strip() for item in patterns for p in item.split(",") if p.strip()]
        variants = self.all()
        by_name = {v.name: v for v in variants}
        chosen: dict[str, type[Variant]] = {}
        for pattern in wanted:
            if any(c in pattern for c in "*?["):
                hits = [v for v in variants if fnmatch.fnmatchcase(v.name, pattern)]
            elif pattern in by_name:
                hits = [by_name[pattern]]
            else:
                hits = [v for v in variants if v.family == pattern]
            if not hits:
                names = [*by_name, *self.families()]
                tip = did_you_mean(pattern, names) or " (see `attnbench list`)"
                raise UserError(f"no variant matches {pattern!r}{tip}")
            chosen.update((v.name, v) for v in hits)
        return [chosen[k] for k in sorted(chosen)]

    def get(self, name: str) -> type[Variant]:
        self.discover()
        if name not in self._items:
            tip = did_you_mean(name, self._items) or " (see `attnbench list`)"
            raise UserError(f"unknown variant {name!r}{tip}")
        return self._items[name]


REGISTRY = Registry()
register = REGISTRY.register

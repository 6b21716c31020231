"""A case: one variant, its parameters, one shape, one dtype/device/mode. Cases are frozen and
hash to a stable id, so a results file can be resumed and two runs can be joined case by case."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

MODES = ("fwd", "fwd+bwd")
DTYPES = ("float32", "float64", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")

Params = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Shape:
    """Tensor shape of q, k and v: (batch, heads, seq_len, d_head)."""

    batch: int
    heads: int
    seq_len: int
    d_head: int

    @property
    def tokens(self) -> int:
        return self.batch * self.seq_len

    def __str__(self) -> str:
        return shape_text(self.batch, self.heads, self.seq_len, self.d_head)


def shape_text(batch: object, heads: object, seq_len: object, d_head: object) -> str:
    return f"B{batch}-H{heads}-N{seq_len}-D{d_head}"


@dataclass(frozen=True)
class Case:
    variant: str
    params: Params = ()
    batch: int = 1
    heads: int = 8
    seq_len: int = 1024
    d_head: int = 64
    dtype: str = "float32"
    device: str = "cpu"
    causal: bool = False
    mode: str = "fwd"
    threads: int = 1
    task: Params = ()

    @property
    def shape(self) -> Shape:
        return Shape(self.batch, self.heads, self.seq_len, self.d_head)

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def label(self) -> str:
        """The variant with its parameters, e.g. `linear.dpfp[nu=2]`: one row of a table."""
        return variant_label(self.variant, self.params)

    @property
    def id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = dict(self.params)
        d["task"] = dict(self.task)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Case:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["params"] = freeze(kw.get("params", {}))
        kw["task"] = freeze(kw.get("task", {}))
        return cls(**kw)

    def __str__(self) -> str:
        return describe(self)


def describe(case: Any) -> str:
    """One case for people, e.g. `linear.elu B1-H8-N1024-D64 float32 cpu causal fwd`: from a
    Case or from a row of results (anything with its label and axes as items or attributes).
    An axis a row lacks (a hand-made record) shows as `?`."""
    get = case.__getitem__ if hasattr(case, "__getitem__") else lambda k: getattr(case, k)

    def known(key: str) -> Any:
        try:
            value = get(key)
        except (KeyError, AttributeError):
            return "?"
        return "?" if value is None or (isinstance(value, float) and math.isnan(value)) else value

    shape = shape_text(
        *(d if d == "?" else int(d) for d in map(known, ("batch", "heads", "seq_len", "d_head")))
    )
    mask = {True: "causal", False: "full"}.get(known("causal"), "?")
    return f"{known('label')} {shape} {known('dtype')} {known('device')} {mask} {known('mode')}"


def freeze(mapping: dict[str, Any]) -> Params:
    return tuple(sorted(mapping.items()))


def variant_label(name: str, params: Params | dict[str, Any]) -> str:
    items = sorted(params.items()) if isinstance(params, dict) else list(params)
    if not items:
        return name
    return name + "[" + ",".join(f"{k}={v}" for k, v in items) + "]"


def parse_label(text: str) -> tuple[str, dict[str, Any]]:
    """`linear.dpfp[nu=2,rule=delta]` -> ("linear.dpfp", {"nu": 2, "rule": "delta"}): the
    inverse of `variant_label`, values read as numbers or booleans where they are."""
    name, sep, rest = text.partition("[")
    if not sep:
        return text, {}
    if not rest.endswith("]"):
        raise ValueError(f"{text!r}: a label's parameters end with ']'")
    params: dict[str, Any] = {}
    for item in filter(None, rest[:-1].split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{text!r}: expected KEY=VALUE between the brackets, got {item!r}")
        params[key.strip()] = scalar(value.strip())
    return name, params


def scalar(text: str) -> Any:
    if text in ("true", "True", "false", "False"):
        return text in ("true", "True")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

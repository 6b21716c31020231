"""What the low-rank variants share: they approximate exact softmax attention (their oracle,
so `rel_err` is the approximation error) and have no causal form."""

from __future__ import annotations

from typing import ClassVar

from attnbench.registry import Variant


class LowRankAttention(Variant):
    family: ClassVar[str] = "lowrank"
    reference: ClassVar[str] = "softmax"
    approximates: ClassVar[bool] = True
    causal_modes: ClassVar[tuple[bool, ...]] = (False,)

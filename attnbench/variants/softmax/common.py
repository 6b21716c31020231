"""What every exact-softmax implementation shares: its oracle and its FLOP count."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, ClassVar

from attnbench.cases import Shape
from attnbench.registry import Variant


class SoftmaxAttention(Variant):
    family: ClassVar[str] = "softmax"
    reference: ClassVar[str] = "softmax"
    flops_formula: ClassVar[str] = "4·B·H·N²·D; causal ½; fwd+bwd 3×"

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        """Matmul FLOPs of softmax(QKᵀ)V: 2·N·N·D for QKᵀ and again for PV, per batch and head.

        Causal counts half (the useful work, as FlashAttention's benchmarks do). fwd+bwd is
        3× fwd: the backward's four matmuls (dV, dP, dQ, dK) without recomputation, so every
        implementation is credited the same work whatever it recomputes.
        """
        fwd = 4 * shape.batch * shape.heads * shape.seq_len * shape.seq_len * shape.d_head
        if causal:
            fwd //= 2
        return fwd if mode == "fwd" else 3 * fwd


def missing_package(module: str, pip_name: str) -> str | None:
    """A reason string when `module` cannot be imported here, else None (no import done)."""
    if importlib.util.find_spec(module) is None:
        return f"package {pip_name} not installed (pip install {pip_name})"
    return None

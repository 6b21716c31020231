"""Per-variant FLOP formulas against torch's FlopCounterMode, for the variants whose work it
can see (it counts matmuls and SDPA's CUDA kernels, not the CPU flash kernel or compiled code).
FlopCounterMode counts the dense product even when causal; our convention credits half."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnbench.cases import Shape
from attnbench.registry import REGISTRY

# the exact-softmax convention (causal credited half); linear forms are checked in test_linear
COUNTABLE = [
    v
    for v in REGISTRY.all()
    if v.available("cpu") and not v.compiled and v.reference == "softmax" and not v.approximates
]


def counted(cls, shape: Shape, *, causal: bool, mode: str) -> int:
    module = cls(heads=shape.heads, d_head=shape.d_head)
    grads = mode == "fwd+bwd"
    q, k, v = (
        torch.randn(shape.batch, shape.heads, shape.seq_len, shape.d_head, requires_grad=grads)
        for _ in range(3)
    )
    counter = FlopCounterMode(display=False)
    with counter:
        out = module(q, k, v, causal=causal)
        if grads:
            out.backward(torch.randn_like(out))
    return counter.get_total_flops()


@pytest.mark.parametrize("cls", COUNTABLE, ids=lambda c: c.name)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_flop_formula_matches_flop_counter(cls, mode, causal):
    shape = Shape(2, 3, 96, 40)
    seen = counted(cls, shape, causal=causal, mode=mode)
    if seen == 0:
        pytest.skip(f"FlopCounterMode cannot see inside {cls.name} on CPU")
    formula = cls.flops(shape, causal=causal, mode=mode, params=cls.params)
    dense = cls.flops(shape, causal=False, mode=mode, params=cls.params)
    assert dense == seen, f"{cls.name} {mode}: formula {dense} vs FlopCounterMode {seen}"
    if causal:
        assert formula * 2 == seen


def test_naive_and_sdpa_math_are_counted():
    """Guard against the test above skipping everything."""
    shape = Shape(1, 2, 64, 32)
    for name in ("softmax.naive", "softmax.sdpa_math"):
        assert counted(REGISTRY.get(name), shape, causal=False, mode="fwd") == 4 * 2 * 64 * 64 * 32

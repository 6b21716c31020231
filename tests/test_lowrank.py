"""Low-rank approximations: exact in their limits, and their error against softmax recorded."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from attnbench.cases import Case, Shape
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.reference.softmax import softmax_attention
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute
from attnbench.variants.lowrank.nystrom import iterative_pinv


def qkv(n: int, d: int = 16, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, n, d, generator=gen, dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("n", [16, 50])
def test_nystrom_with_every_token_a_landmark_is_softmax(n):
    q, k, v = qkv(n)
    module = REGISTRY.get("lowrank.nystrom")(heads=3, d_head=16, landmarks=n, pinv="exact")
    assert relative_error(module(q, k, v), softmax_attention(q, k, v)) < 1e-8


def test_iterative_pseudo_inverse_converges():
    q, k, _ = qkv(24)
    a = torch.softmax(q @ k.transpose(-1, -2) / 4, dim=-1)
    errors = [relative_error(iterative_pinv(a, iters), torch.linalg.pinv(a)) for iters in (2, 6, 30)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6


def test_approximation_error_is_a_recorded_metric_and_falls_with_rank():
    def error(name: str, params: tuple) -> float:
        result = execute(Case(name, params, 1, 2, 256, 32), MeasureSettings(metrics=("error",)))
        assert result.status == "ok", result.error
        return result.metrics["rel_err"]

    coarse, fine = (
        error("lowrank.nystrom", (("landmarks", 4),)),
        error("lowrank.nystrom", (("landmarks", 128),)),
    )
    assert 0 < fine < coarse < 1
    assert 0 < error("lowrank.linformer", (("k", 64),)) < float("inf")


def test_linformer_with_identity_projections_is_softmax():
    n = 40
    q, k, v = qkv(n)
    module = REGISTRY.get("lowrank.linformer")(heads=3, d_head=16, k=n, max_len=n).double()
    with torch.no_grad():
        module.e.copy_(torch.eye(n))
        module.f.copy_(torch.eye(n))
    assert relative_error(module(q, k, v), softmax_attention(q, k, v)) < 1e-12


def test_linformer_limits_are_recorded():
    settings = MeasureSettings(metrics=("error",))
    too_long = execute(Case("lowrank.linformer", (("max_len", 128),), 1, 2, 200, 16), settings)
    assert too_long.status == "unsupported" and "max_len=128" in too_long.error
    causal = execute(Case("lowrank.nystrom", (), 1, 2, 64, 16, causal=True), settings)
    assert causal.status == "unsupported"


def test_linformer_flops_match_the_flop_counter():
    shape = Shape(2, 3, 100, 16)
    module = REGISTRY.get("lowrank.linformer")(heads=3, d_head=16, k=32, max_len=128)
    counter = FlopCounterMode(display=False)
    with counter:
        module(*qkv(100, dtype=torch.float32))
    assert module.flops(shape, causal=False, mode="fwd", params={"k": 32}) == counter.get_total_flops()

"""Sparse attention: the sliding window equals softmax attention under the same band mask,
its blocked form's memory is linear in N, and it declares its density."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.cases import Case
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute


def band_masked_naive(q, k, v, *, window: int, causal: bool) -> torch.Tensor:
    """softmax.naive's computation with an explicit band mask (independent of the oracle)."""
    n = q.shape[-2]
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    ok = (i - j < window) & (j - i < window)
    if causal:
        ok &= j <= i
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~ok, float("-inf")), -1) @ v


@pytest.mark.parametrize("name", ["sparse.local", "sparse.local_sdpa"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize(("n", "window"), [(1, 4), (37, 8), (64, 16), (100, 7), (50, 1), (20, 64)])
def test_local_window_equals_naive_with_band_mask(name, causal, n, window):
    gen = torch.Generator().manual_seed(n * 100 + window)
    q, k, v = (torch.randn(2, 3, n, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    module = REGISTRY.get(name)(heads=3, d_head=16, window=window)
    expected = band_masked_naive(q, k, v, window=window, causal=causal)
    assert relative_error(module(q, k, v, causal=causal), expected) < 1e-12


def test_local_flex_matches_blocked_form():
    """FlexAttention's block-mask path (compiled on CPU) agrees with the blocked form."""
    q, k, v = (torch.randn(1, 2, 256, 32) for _ in range(3))
    flex = REGISTRY.get("sparse.local_flex")(heads=2, d_head=32, window=48)
    blocked = REGISTRY.get("sparse.local")(heads=2, d_head=32, window=48)
    assert relative_error(flex(q, k, v, causal=True), blocked(q, k, v, causal=True)) < 1e-5


def peak(name: str, n: int) -> int:
    case = Case(name, (("window", 128),), 1, 2, n, 32, causal=True, mode="fwd+bwd")
    result = execute(case, MeasureSettings(metrics=("memory",), warmup=0, calibrate=False))
    assert result["status"] == "ok", result["error"]
    return result["metrics"]["peak_mem_bytes"]


def test_blocked_local_peak_memory_is_linear_in_n():
    """Exact CPU peak bytes: the blocked form's peak is a·N + c exactly (equal increments per
    1024 tokens, a window-sized constant); the dense-mask path's grows fourfold."""
    p1, p2, p3 = (peak("sparse.local", n) for n in (1024, 2048, 3072))
    assert p3 - p2 == p2 - p1 > 0
    assert peak("sparse.local_sdpa", 2048) > 3.5 * peak("sparse.local_sdpa", 1024)


@pytest.mark.parametrize("causal", [True, False])
def test_density_and_flops_count_the_allowed_pairs(causal):
    cls = REGISTRY.get("sparse.local")
    n, w = 300, 32
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    ok = (i - j).abs() < w
    if causal:
        ok &= j <= i
    pairs = int(ok.sum())
    assert cls.pairs(n, causal=causal, params={"window": w}) == pairs
    full = n * (n + 1) // 2 if causal else n * n
    assert cls.density(n, causal=causal, params={"window": w}) == pytest.approx(pairs / full)
    result = execute(
        Case("sparse.local", (("window", w),), 1, 2, n, 16, causal=causal),
        MeasureSettings(metrics=("error",)),
    )
    assert result["status"] == "ok", result["error"]
    assert result["metrics"]["density"] == pytest.approx(pairs / full)
    assert result["metrics"]["rel_err"] < 1e-5

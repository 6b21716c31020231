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


def masked_naive(q, k, v, ok: torch.Tensor, *, causal: bool) -> torch.Tensor:
    """softmax.naive's computation under an explicit N×N mask (independent of the oracle)."""
    n = q.shape[-2]
    if causal:
        ok = ok & torch.ones(n, n, dtype=torch.bool).tril()
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~ok, float("-inf")), -1) @ v


def band_masked_naive(q, k, v, *, window: int, causal: bool) -> torch.Tensor:
    n = q.shape[-2]
    ok = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        ok[i, max(0, i - window + 1) : i + window] = True
    return masked_naive(q, k, v, ok, causal=causal)


def star_mask(n: int, neighbours: int) -> torch.Tensor:
    ok = torch.zeros(n, n, dtype=torch.bool)
    ok[0, :] = ok[:, 0] = True  # the relay reads and is read by every token
    for i in range(n):
        ok[i, max(0, i - neighbours) : i + neighbours + 1] = True
    return ok


def strided_mask(n: int, window: int, stride: int) -> torch.Tensor:
    ok = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        ok[i, max(0, i - window + 1) : i + window] = True
        ok[i, i % stride :: stride] = True  # every s-th key, in step with i
    return ok


def bigbird_mask(n: int, *, global_: int, window: int, block: int, random: int, seed: int) -> torch.Tensor:
    ok = torch.zeros(n, n, dtype=torch.bool)
    ok[:global_, :] = ok[:, :global_] = True
    for i in range(n):
        ok[i, max(0, i - window + 1) : i + window] = True
    blocks = -(-n // block)
    gen = torch.Generator().manual_seed(seed)
    for a in range(blocks):  # the same draws, in the same order, as the variant's table
        for b in torch.randperm(blocks, generator=gen)[: min(random, blocks)].tolist():
            ok[a * block : (a + 1) * block, b * block : (b + 1) * block] = True
    return ok


def qkv64(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, n, 16, generator=gen, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("name", ["sparse.star", "sparse.star_sdpa"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize(("n", "neighbours"), [(1, 1), (2, 1), (33, 1), (64, 3)])
def test_star_equals_naive_with_its_mask(name, causal, n, neighbours):
    q, k, v = qkv64(n, n + neighbours)
    module = REGISTRY.get(name)(heads=3, d_head=16, neighbours=neighbours)
    expected = masked_naive(q, k, v, star_mask(n, neighbours), causal=causal)
    assert relative_error(module(q, k, v, causal=causal), expected) < 1e-12


@pytest.mark.parametrize("name", ["sparse.strided", "sparse.strided_sdpa"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize(("n", "window", "stride"), [(1, 4, 4), (37, 4, 8), (100, 7, 5), (64, 16, 3)])
def test_strided_equals_naive_with_its_mask(name, causal, n, window, stride):
    q, k, v = qkv64(n, n + window + stride)
    module = REGISTRY.get(name)(heads=3, d_head=16, window=window, stride=stride)
    expected = masked_naive(q, k, v, strided_mask(n, window, stride), causal=causal)
    assert relative_error(module(q, k, v, causal=causal), expected) < 1e-12


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("n", [40, 130])
def test_global_local_random_equals_naive_with_its_mask(causal, n):
    params = {"global_": 3, "window": 8, "block": 16, "random": 2, "seed": 7}
    q, k, v = qkv64(n, n)
    module = REGISTRY.get("sparse.bigbird_sdpa")(heads=3, d_head=16, **params)
    expected = masked_naive(q, k, v, bigbird_mask(n, **params), causal=causal)
    assert relative_error(module(q, k, v, causal=causal), expected) < 1e-12


@pytest.mark.parametrize("name", ["sparse.local", "sparse.local_sdpa"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize(("n", "window"), [(1, 4), (37, 8), (64, 16), (100, 7), (50, 1), (20, 64)])
def test_local_window_equals_naive_with_band_mask(name, causal, n, window):
    gen = torch.Generator().manual_seed(n * 100 + window)
    q, k, v = (torch.randn(2, 3, n, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    module = REGISTRY.get(name)(heads=3, d_head=16, window=window)
    expected = band_masked_naive(q, k, v, window=window, causal=causal)
    assert relative_error(module(q, k, v, causal=causal), expected) < 1e-12


@pytest.mark.parametrize(
    ("pattern", "params"),
    [
        ("local", {"window": 48}),
        ("strided", {"window": 16, "stride": 40}),
        ("star", {"neighbours": 2}),
        ("bigbird", {"global_": 2, "window": 16, "block": 32, "random": 2, "seed": 1}),
    ],
)
def test_flex_block_mask_matches_dense_mask(pattern, params):
    """FlexAttention's block-mask path (compiled on CPU) agrees with the dense-mask path."""
    q, k, v = (torch.randn(1, 2, 256, 32) for _ in range(3))
    flex = REGISTRY.get(f"sparse.{pattern}_flex")(heads=2, d_head=32, **params)
    dense = REGISTRY.get(f"sparse.{pattern}_sdpa")(heads=2, d_head=32, **params)
    assert relative_error(flex(q, k, v, causal=True), dense(q, k, v, causal=True)) < 1e-5


def peak(name: str, n: int, params=(("window", 128),)) -> int:
    case = Case(name, params, 1, 2, n, 32, causal=True, mode="fwd+bwd")
    result = execute(case, MeasureSettings(metrics=("memory",), warmup=0, calibrate=False))
    assert result.status == "ok", result.error
    return result.metrics["peak_mem_bytes"]


def test_blocked_local_peak_memory_is_linear_in_n():
    """Exact CPU peak bytes: the blocked form's peak is a·N + c exactly (equal increments per
    1024 tokens, a window-sized constant); the dense-mask path's grows fourfold."""
    p1, p2, p3 = (peak("sparse.local", n) for n in (1024, 2048, 3072))
    assert p3 - p2 == p2 - p1 > 0
    assert peak("sparse.local_sdpa", 2048) > 3.5 * peak("sparse.local_sdpa", 1024)


def test_star_peak_memory_is_linear_and_strided_sub_quadratic():
    p1, p2, p3 = (peak("sparse.star", n, ()) for n in (1024, 2048, 3072))
    assert p3 - p2 == p2 - p1 > 0
    strided = (("window", 64), ("stride", 64))
    ratio = peak("sparse.strided", 4096, strided) / peak("sparse.strided", 2048, strided)
    dense = peak("sparse.strided_sdpa", 4096, strided) / peak("sparse.strided_sdpa", 2048, strided)
    assert ratio < 3.0 < dense  # O(N·w + N²/s) against N²


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
    assert result.status == "ok", result.error
    assert result.metrics["density"] == pytest.approx(pairs / full)
    assert result.metrics["rel_err"] < 1e-5

"""Segment recurrence (Transformer-XL): equal to softmax over the keys it may read, with its
relative position terms; the cache it carries is reported; memory grows linearly in N."""

from __future__ import annotations

import pytest
import torch

from attnbench import reference
from attnbench.cases import Case
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.reference.softmax import softmax_attention
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute


def xl(segment: int, memory: int, *, positions: bool = True):
    module = REGISTRY.get("memory.xl")(heads=3, d_head=16, segment=segment, memory=memory).double()
    if not positions:
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
    return module


def qkv(n: int, grads: bool = False):
    gen = torch.Generator().manual_seed(n)
    return [
        torch.randn(2, 3, n, 16, generator=gen, dtype=torch.float64).requires_grad_(grads) for _ in range(3)
    ]


def assert_matches_oracle(module, n: int) -> None:
    """Outputs and gradients equal the variant's float64 oracle to rounding."""
    q, k, v = qkv(n, grads=True)
    out = module(q, k, v, causal=True)
    ref = reference.get(module.reference)(q, k, v, causal=True, **module.oracle_kwargs())
    assert relative_error(out, ref) < 1e-12
    g = torch.randn_like(out)
    got, want = torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(got, want, strict=True):
        assert relative_error(a, b) < 1e-10


@pytest.mark.parametrize(("n", "segment", "memory"), [(1, 4, 4), (37, 8, 8), (100, 16, 5), (50, 7, 20)])
def test_xl_matches_its_oracle_with_gradients(n, segment, memory):
    assert_matches_oracle(xl(segment, memory), n)


def test_one_segment_without_position_terms_is_causal_softmax():
    q, k, v = qkv(40)
    out = xl(64, 0, positions=False)(q, k, v, causal=True)
    assert relative_error(out, softmax_attention(q, k, v, causal=True)) < 1e-12


def test_segments_without_memory_are_independent():
    q, k, v = qkv(48)
    out = xl(16, 0, positions=False)(q, k, v, causal=True)
    for s in range(0, 48, 16):
        part = softmax_attention(q[:, :, s : s + 16], k[:, :, s : s + 16], v[:, :, s : s + 16], causal=True)
        assert relative_error(out[:, :, s : s + 16], part) < 1e-12


def test_cache_is_reported_and_peak_memory_is_linear():
    settings = MeasureSettings(metrics=("memory", "error"), warmup=0, calibrate=False)
    peaks = []
    for n in (4096, 8192, 12288):  # long enough that the outputs, not one segment, set the peak
        case = Case("memory.xl", (("segment", 128), ("memory", 128)), 1, 2, n, 32, causal=True, mode="fwd")
        result = execute(case, settings)
        assert result.status == "ok", result.error
        assert result.metrics["cache_bytes"] == 2 * 1 * 2 * 128 * 32 * 4
        assert result.metrics["rel_err"] < 1e-5
        peaks.append(result.metrics["peak_mem_bytes"])
    assert peaks[2] - peaks[1] == peaks[1] - peaks[0] > 0


def test_xl_has_no_non_causal_form():
    result = execute(Case("memory.xl", (), 1, 2, 64, 16, causal=False), MeasureSettings(metrics=("error",)))
    assert result.status == "unsupported"


def compressive(**params):
    return REGISTRY.get("memory.compressive")(heads=3, d_head=16, **params)


@pytest.mark.parametrize(
    ("n", "params"),
    [
        (37, {"segment": 8, "memory": 8, "compressed": 3, "rate": 2}),
        (100, {"segment": 16, "memory": 8, "compressed": 4, "rate": 3}),
        (64, {"segment": 16, "memory": 0, "compressed": 8, "rate": 4}),
    ],
)
def test_compressive_matches_its_per_query_oracle(n, params):
    assert_matches_oracle(compressive(**params), n)


def test_compressive_limits():
    """Rate 1 with room for every old token is full causal softmax; no compressed slots is
    Transformer-XL without its position terms."""
    q, k, v = qkv(45)
    full = compressive(segment=8, memory=4, compressed=64, rate=1)(q, k, v, causal=True)
    assert relative_error(full, softmax_attention(q, k, v, causal=True)) < 1e-12
    plain = compressive(segment=8, memory=4, compressed=0, rate=2)(q, k, v, causal=True)
    assert relative_error(plain, xl(8, 4, positions=False)(q, k, v, causal=True)) < 1e-12


def test_compressive_flops_and_cache():
    from torch.utils.flop_counter import FlopCounterMode

    from attnbench.cases import Shape

    params = {"segment": 16, "memory": 8, "compressed": 4, "rate": 3}
    module = compressive(**params)
    counter = FlopCounterMode(display=False)
    with counter:
        module(*qkv(100), causal=True)
    # the counter also sees the masked upper half of each segment's own block; the formula
    # credits the useful reads only (the causal convention of the softmax family)
    masked = sum(length * (length - 1) // 2 for length in [16] * 6 + [4])
    expected = counter.get_total_flops() - 4 * 2 * 3 * 16 * masked
    assert module.flops(Shape(2, 3, 100, 16), causal=True, mode="fwd", params=params) == expected
    assert module.cache_bytes(Shape(2, 3, 100, 16), 4) == 2 * 2 * 3 * (8 + 4) * 16 * 4

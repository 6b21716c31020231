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


@pytest.mark.parametrize(("n", "segment", "memory"), [(1, 4, 4), (37, 8, 8), (100, 16, 5), (50, 7, 20)])
def test_xl_matches_its_oracle_with_gradients(n, segment, memory):
    module = xl(segment, memory)
    q, k, v = qkv(n, grads=True)
    out = module(q, k, v, causal=True)
    ref = reference.get("masked_softmax")(q, k, v, causal=True, **module.oracle_kwargs())
    assert relative_error(out, ref) < 1e-12
    g = torch.randn_like(out)
    for a, b in zip(
        torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g), strict=True
    ):
        assert relative_error(a, b) < 1e-10


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
        assert result["status"] == "ok", result["error"]
        assert result["metrics"]["cache_bytes"] == 2 * 1 * 2 * 128 * 32 * 4
        assert result["metrics"]["rel_err"] < 1e-5
        peaks.append(result["metrics"]["peak_mem_bytes"])
    assert peaks[2] - peaks[1] == peaks[1] - peaks[0] > 0


def test_xl_has_no_non_causal_form():
    result = execute(Case("memory.xl", (), 1, 2, 64, 16, causal=False), MeasureSettings(metrics=("error",)))
    assert result["status"] == "unsupported"

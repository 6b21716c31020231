"""The oracle checked against other oracles: a dense float64 formula and SDPA's math path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnbench.reference.softmax import softmax_attention


def dense(q, k, v, causal):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, -1) @ v


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_blocked_oracle_equals_the_dense_formula_and_sdpa_math(causal):
    q, k, v = torch.randn(3, 2, 3, 300, 24, dtype=torch.float64).unbind(0)
    ref = softmax_attention(q, k, v, causal=causal, block=64)  # several blocks, a ragged last one
    torch.testing.assert_close(ref, dense(q, k, v, causal), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        ref, F.scaled_dot_product_attention(q, k, v, is_causal=causal), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_rows_subset_equals_those_rows_of_the_full_output(causal):
    q, k, v = torch.randn(3, 1, 2, 200, 16, dtype=torch.float64).unbind(0)
    rows = torch.tensor([0, 7, 99, 199])
    full = softmax_attention(q, k, v, causal=causal)
    torch.testing.assert_close(softmax_attention(q, k, v, causal=causal, rows=rows), full[..., rows, :])


def test_first_causal_row_is_its_own_value():
    q, k, v = torch.randn(3, 1, 1, 10, 8, dtype=torch.float64).unbind(0)
    out = softmax_attention(q, k, v, causal=True)
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :])

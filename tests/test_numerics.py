"""The error metric catches wrong implementations, forward and backward."""

from __future__ import annotations

import math

import torch

from attnbench.measure.numerics import error_vs_reference, relative_error, sample_rows
from attnbench.reference.softmax import softmax_attention


def right(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def unscaled(q, k, v):  # forgets 1/√d
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)


def blocks_k_gradient(q, k, v):  # right forward, no gradient reaches k
    return right(q, k.detach(), v)


def qkv(n=300):
    return torch.randn(3, 2, 3, n, 32).unbind(0)


def test_a_correct_forward_has_float32_rounding_error():
    m = error_vs_reference(right, softmax_attention, *qkv(), causal=True, grads=True)
    assert m["rel_err"] < 1e-5 and m["grad_rel_err"] < 1e-4 and m["max_abs_err"] < 1e-5


def test_a_wrong_forward_is_caught():
    assert error_vs_reference(unscaled, softmax_attention, *qkv(), causal=True, grads=False)["rel_err"] > 0.1


def test_a_wrong_gradient_is_caught_even_with_a_right_forward():
    m = error_vs_reference(blocks_k_gradient, softmax_attention, *qkv(), causal=True, grads=True)
    assert m["rel_err"] < 1e-5
    assert math.isclose(m["grad_rel_err"], 1.0)


def test_nan_is_infinitely_wrong():
    ref = torch.ones(4)
    assert relative_error(torch.tensor([1.0, float("nan"), 1.0, 1.0]), ref) == float("inf")


def test_sampled_rows_cover_both_ends():
    rows = sample_rows(10_000, 128)
    assert rows[0] == 0 and rows[-1] == 9_999 and len(rows) == 128
    assert sample_rows(50, 128).tolist() == list(range(50))

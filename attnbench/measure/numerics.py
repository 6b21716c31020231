"""Numerical error against a float64 oracle, forward and (in fwd+bwd mode) gradients.

At long sequences a full float64 reference is as costly as the thing measured, so the error
is taken on a fixed sample of query rows (always including the first and last): the oracle
computes just those rows exactly, and in fwd+bwd mode both sides differentiate the same
scalar, sum(out[rows] · g), so the gradients compared are of the same function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64; inf if `actual` has a NaN or inf."""
    actual, expected = actual.to(torch.float64), expected.to(torch.float64)
    if not torch.isfinite(actual).all():
        return float("inf")
    denom = expected.norm().item()
    diff = (actual - expected).norm().item()
    return diff / denom if denom > 0 else diff


def sample_rows(n: int, count: int) -> torch.Tensor:
    if n <= count:
        return torch.arange(n)
    return torch.linspace(0, n - 1, count).round().long().unique()


def error_vs_reference(
    forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    oracle: Callable[..., torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    grads: bool,
    rows: int = 128,
    seed: int = 0,
) -> dict[str, float]:
    idx = sample_rows(q.shape[-2], rows)
    leaves = [t.detach().clone().requires_grad_(grads) for t in (q, k, v)]
    leaves64 = [t.detach().to(torch.float64).requires_grad_(grads) for t in (q, k, v)]
    with torch.set_grad_enabled(grads):
        out = forward(*leaves)[..., idx.to(q.device), :]
        ref = oracle(*leaves64, causal=causal, rows=idx)
    metrics = {
        "rel_err": relative_error(out.detach(), ref.detach()),
        "max_abs_err": (out.detach().double() - ref.detach()).abs().max().item(),
    }
    if grads:
        g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, out.dtype)
        got = torch.autograd.grad(out, leaves, g, allow_unused=True, materialize_grads=True)
        want = torch.autograd.grad(ref, leaves64, g.to(torch.float64))
        metrics["grad_rel_err"] = max(relative_error(a, b) for a, b in zip(got, want, strict=True))
    return metrics

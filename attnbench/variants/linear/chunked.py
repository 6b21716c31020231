"""The chunked form of causal linear attention, streamed: sum and delta rule (the delta rule in
the WY/UT form of Yang et al. 2024), forward and backward in O(N) memory beyond the inputs, the
output and the gradients.

The sequence is cut into chunks of C tokens (the form's arithmetic, and its FLOP count) and
the chunks into blocks (`chunk_blocks.py`; their length changes no result). A block computes
φ(q), φ(k) and a learned β from the raw inputs itself, runs its chunks as batched matmuls, writes
its rows of the output and hands the next block only the memory S (F×D) and the key sum z (F):
in a no-grad forward nothing else lives. With grad, `ChunkedRule` keeps (S, z) at the start of
every segment of a few blocks, and its backward (`chunk_backward.py`) recomputes the states and
features of one segment at a time from them, as fla's chunk kernels recompute their states
rather than store them: fwd+bwd memory and time grow linearly with N.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from attnbench.kernels import cpu_linear, native
from attnbench.variants.linear import chunk_backward
from attnbench.variants.linear.chunk_blocks import Spec, plan, stream

__all__ = ["ChunkedRule", "Spec", "chunk_delta", "chunk_sum", "chunked"]


class ChunkedRule(torch.autograd.Function):
    """The streamed chunked form with a recomputing backward. Inputs: `spec`, q, k raw
    (B, H, N, D) (features when spec.phi is None), v (B, H, N, D), β (B, H, N) or None, then
    the tensors φ and spec.beta_of_keys read that need gradients (found by recomputing them)."""

    @staticmethod
    def forward(ctx, spec: Spec, q, k, v, beta, *params):
        kept = _cpu_kernel(spec, q, k, v, segment=spec.segment)
        if kept is None:
            out, checkpoints = v.new_empty(v.shape), []
            dens = stream(spec, q, k, v, beta, out, checkpoints)
        else:
            out, checkpoints, dens = kept
        ctx.spec, ctx.checkpoints = spec, checkpoints
        ctx.save_for_backward(q, k, v, beta, out, dens, *params)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        q, k, v, beta, out, dens, *params = ctx.saved_tensors
        saved = (q, k, v, beta, out, dens, params)
        return None, *chunk_backward.backward(
            ctx.spec, ctx.checkpoints, dout, saved, ctx.needs_input_grad[1:]
        )


def chunked(spec: Spec, q, k, v, beta=None, params: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """The chunked form: through `ChunkedRule` when a gradient is wanted, else streamed with
    nothing kept. q, k (B, H, N, D) raw (features when spec.phi is None), v (B, H, N, D),
    beta (B, H, N) given, or None (learned by spec.beta_of_keys, or the sum rule)."""
    f = spec.d_dot or q.shape[-1]
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, beta, *params)
    )
    rows, n, d = q.shape[0] * q.shape[1], q.shape[2], v.shape[-1]
    spec = plan(spec, rows, n, f, d, v.element_size(), grad=grad, gpu=v.device.type == "cuda")
    if grad:
        return ChunkedRule.apply(spec, q, k, v, beta, *params)
    out = _cpu_kernel(spec, q, k, v)
    if out is None:
        out = v.new_empty(v.shape)
        stream(spec, q, k, v, beta, out)
    return out


def _cpu_kernel(spec: Spec, q, k, v, segment: int | None = None):
    """The fused CPU kernel's output (with `segment`: and the checkpoints and denominators the
    backward reads), or None where it does not apply or cannot be built (then the stream runs;
    the result's environment says why: `native.state`)."""
    if spec.delta or not cpu_linear.supports(spec.elementwise, q, k, v):
        return None
    kw = dict(
        elementwise=spec.elementwise, sum_norm=spec.sum_norm, attn_norm=spec.normalize, chunk=spec.chunk
    )
    try:
        if segment is None:
            return cpu_linear.forward(q, k, v, **kw)
        return cpu_linear.forward_for_backward(q, k, v, **kw, segment=segment)
    except native.Unavailable:
        return None


def chunk_sum(q, k, v, *, normalize: bool, chunk: int = 64) -> torch.Tensor:
    """Causal sum rule over features q, k (B, H, N, F) and values v (B, H, N, D)."""
    return chunked(Spec(False, normalize, chunk), q, k, v)


def chunk_delta(q, k, v, beta, *, normalize: bool, chunk: int = 64) -> torch.Tensor:
    """Causal delta rule over features q, k (B, H, N, F), values v and write strengths β (B, H, N)."""
    return chunked(Spec(True, normalize, chunk), q, k, v, beta)

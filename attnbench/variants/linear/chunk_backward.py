"""The backward of the streamed chunked form (`chunked.py`), segment by segment in reverse.

Per segment, the memory kept at its start (the forward's checkpoint) is carried through the
segment's blocks again to recompute the memory each chunk enters with; then the segment's blocks
are walked in reverse, each recomputing its features (φ and a learned β, with their graph), its
scores and writes, and the gradients below. With G = ∂L/∂O and ∂S' the gradient of the memory
a chunk leaves (with attention normalisation, G = [∂L/∂out / den | ∂den] for O = [num | den],
and the values and the memory have their column of ones and of key sums: `with_ones`):

    ∂X = tril(QKᵀ)ᵀ G + K ∂S'     ∂S = ∂S' + Qᵀ G (− Wᵀ ∂X, delta rule)     ∂P = tril(G Xᵀ)
    ∂Q = ∂P K + G Sᵀ               ∂K = ∂Pᵀ Q + X ∂S'ᵀ

and for the delta rule, from ∂U = ∂X and ∂W = −∂X Sᵀ: ∂[βV, βK] = (I + A)⁻ᵀ [∂U, ∂W] and
∂A = −tril(∂[βV, βK] [U, W]ᵀ, −1), which reach V, K and β (`_ut_backward`). The only loop over
chunks is that of ∂S (a suffix sum for the sum rule).
"""

from __future__ import annotations

import torch

from attnbench.variants.linear.chunk_blocks import Block, Spec, chunked, features, spans, unchunked


def _ut_backward(blk: Block, dx: torch.Tensor, dk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """∂V and ∂β of one block from ∂X (B·H·n, C, D), for X = U − W S; the UT transform's part
    of ∂K is added into dk."""
    d = blk.d
    dy = torch.cat([dx, -torch.bmm(dx, blk.mem[..., :d].mT)], dim=-1)  # [∂U, ∂W]
    drhs = torch.linalg.solve_triangular(blk.a.mT, dy, upper=True, unitriangular=True)
    g = torch.bmm(drhs, blk.uw.mT).tril_(-1).neg_()  # ∂A
    kb = blk.beta.unsqueeze(-1) * blk.k
    gk = torch.baddbmm(drhs[..., d:], g, blk.k)  # ∂(βK): from the right-hand side and from A
    dbeta = (drhs[..., :d] * blk.v).sum(-1) + (gk * blk.k).sum(-1)
    dk.addcmul_(blk.beta.unsqueeze(-1), gk).baddbmm_(g.mT, kb)
    return blk.beta.unsqueeze(-1) * drhs[..., :d], dbeta


def _block_backward(blk: Block, grad: torch.Tensor, ds: torch.Tensor):
    """∂Q, ∂K, ∂V, ∂β of one block (chunked) from G (B·H·n, C, D') and ∂S' of the memory it
    leaves; returns them and ∂S of the memory it entered with."""
    rows, n = blk.rows, blk.per_row
    c, f, d, dx = blk.k.shape[1], blk.k.shape[2], blk.d, blk.x.shape[2]
    pg = torch.bmm(blk.scores.mT, grad).view(rows, n, c, dx)
    qg = torch.bmm(blk.q.mT, grad).view(rows, n, f, dx)
    ds_out = grad.new_empty(rows, n, f, dx)  # ∂ of the memory each chunk leaves
    if blk.uw is None:
        ds_out[:, -1] = ds
        for i in range(n - 1, 0, -1):
            torch.add(ds_out[:, i], qg[:, i], out=ds_out[:, i - 1])
        ds = ds_out[:, 0] + qg[:, 0]
        gx = torch.baddbmm(pg.view(-1, c, dx), blk.k, ds_out.view(-1, f, dx))
    else:
        gx = grad.new_empty(rows, n, c, dx)
        k4, w4 = blk.k.view(rows, n, c, f), blk.uw.view(rows, n, c, d + f)[..., d:]
        for i in range(n - 1, -1, -1):
            ds_out[:, i] = ds
            torch.baddbmm(pg[:, i], k4[:, i], ds, out=gx[:, i])
            ds = ds + qg[:, i]
            ds[..., :d].baddbmm_(w4[:, i].mT, gx[:, i, :, :d], alpha=-1)  # W reads S's values only
        gx = gx.view(-1, c, dx)
    dp = torch.bmm(grad, blk.x.mT, out=blk.scores).tril_()  # the scores are read no more
    dq = torch.bmm(dp, blk.k).baddbmm_(grad, blk.mem.mT)
    dk = torch.bmm(dp.mT, blk.q).baddbmm_(blk.x, ds_out.view(-1, f, dx).mT)
    if blk.uw is None:
        return dq, dk, gx[..., :d], None, ds
    dv, dbeta = _ut_backward(blk, gx[..., :d], dk)
    return dq, dk, dv, dbeta, ds


class _Grads:
    """The gradients being written, span by span, and the carried ∂S."""

    def __init__(self, q, k, v, beta, params, needs) -> None:
        # every row of these is written, span by span
        self.q, self.k, self.v = (torch.empty_like(t) if needs[i] else None for i, t in enumerate((q, k, v)))
        self.beta = torch.empty_like(beta) if beta is not None and needs[3] else None
        self.params = [torch.zeros_like(p) for p in params]
        self.ds = None


def _output_grad(spec: Spec, dout, out, dens, s: int, e: int) -> torch.Tensor:
    """G for one span, chunked: ∂out, or with normalisation [∂out / den | ∂den], where
    out = num / den gives ∂den = −Σ_d (∂out_d / den) out_d."""
    if not spec.normalize:
        return chunked(dout[:, :, s:e], spec.chunk)
    g = dout[:, :, s:e] / dens[:, :, s:e].unsqueeze(-1)
    dden = (g * out[:, :, s:e]).sum(-1, keepdim=True).neg_()
    return chunked(torch.cat([g, dden], dim=-1), spec.chunk)


def _span_backward(spec: Spec, saved, dout, s: int, e: int, mem: torch.Tensor, grads: _Grads) -> None:
    q, k, v, beta, out, dens, params = saved
    beta_s = None if beta is None else beta[:, :, s:e]
    with torch.enable_grad():
        raw = [t[:, :, s:e].detach().requires_grad_() for t in (q, k)]
        fq, fk, b = features(spec, *raw, beta_s)
    blk = Block.of(spec, fq.detach(), fk.detach(), v[:, :, s:e], None if b is None else b.detach())
    blk.set_states(mem)
    gq, gk, gv, gb, grads.ds = _block_backward(blk, _output_grad(spec, dout, out, dens, s, e), grads.ds)
    like = v[:, :, s:e]
    if grads.v is not None:
        grads.v[:, :, s:e] = unchunked(gv, like)
    gb = None if gb is None else unchunked(gb.unsqueeze(-1), like).squeeze(-1)
    if grads.beta is not None:
        grads.beta[:, :, s:e] = gb
    gq, gk = unchunked(gq, fq), unchunked(gk, fk)
    if spec.phi is None and b is beta_s:
        parts = (gq, gk)
    else:  # through φ (and a learned β) to the raw inputs and the tensors they read
        outputs, cotangents = [fq, fk], [gq, gk]
        if b is not beta_s:
            outputs.append(b)
            cotangents.append(gb)
        parts = torch.autograd.grad(outputs, [*raw, *params], cotangents, allow_unused=True)
        for acc, part in zip(grads.params, parts[2:], strict=True):
            if part is not None:
                acc.add_(part)
    for full, part in zip((grads.q, grads.k), parts[:2], strict=False):
        if full is not None:
            full[:, :, s:e] = part


def backward(spec: Spec, checkpoints: list, dout: torch.Tensor, saved, needs) -> tuple:
    """∂q, ∂k, ∂v, ∂β and ∂ of every tensor in `params` (None where not needed) from ∂out.
    `saved` = (q, k, v, beta, out, dens, params) of the forward, `checkpoints` its memory at
    every segment's start."""
    q, k, v, beta, _, _, params = saved
    grads = _Grads(q, k, v, beta, params, needs)
    segments = spans(0, q.shape[2], spec.segment)
    for (start, end), state in reversed(list(zip(segments, checkpoints, strict=True))):
        if grads.ds is None:
            grads.ds = torch.zeros_like(state)
        blocks, entering = spans(start, end, spec.block), []  # the memory of each block's chunks
        for s, e in blocks:
            _, fk, b = features(spec, None, k[:, :, s:e], None if beta is None else beta[:, :, s:e])
            blk = Block.of(spec, None, fk, v[:, :, s:e], b)
            state = blk.run_states(state)
            entering.append(blk.mem)
        for (s, e), mem in reversed(list(zip(blocks, entering, strict=True))):
            _span_backward(spec, saved, dout, s, e, mem, grads)
    return grads.q, grads.k, grads.v, grads.beta, *grads.params

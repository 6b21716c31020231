"""Chunked causal delta rule in Triton (Yang et al. 2024), forward only, in two kernels.

1. `_ut_kernel`, one program per (chunk, batch·head): the WY/UT representation of the chunk's
   C sequential writes. A = tril(diag(β) K Kᵀ, −1) accumulated over BK-wide feature tiles,
   T = (I + A)⁻¹ by forward substitution over the C rows, then W = T diag(β) K and
   U = T diag(β) V tile by tile (fp32 buffers).
2. `linear_chunk._chunk_scan_kernel` with DELTA: the sequential hand-off between chunks,
   X = U − W S, out = Q S + tril(Q Kᵀ) X, S += Kᵀ X, with the memory S in tiles of an fp32
   scratch. With `normalize`, the attention denominator φ(q_t)·Σ_{s≤t} φ(k_s) is accumulated
   in the same pass.

No tile grows with F or D, so every configuration fits a device's shared memory
(`kernels.budget`; before the tiling, d_dot 256 × d 128 needed 440 KiB where an H200 has
227 KiB). The arithmetic is that of `attnbench.variants.linear.chunked.chunk_delta`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attnbench.kernels.linear_chunk import check_qkv, load_rows, scan, tiles_for


@triton.jit
def _ut_kernel(
    k_ptr,
    v_ptr,
    beta_ptr,
    u_ptr,
    w_ptr,
    N,
    NP,
    K: tl.constexpr,
    V: tl.constexpr,
    C: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    PREC: tl.constexpr,
):
    i_c, i_bh = tl.program_id(0), tl.program_id(1)
    k_ptr += i_bh.to(tl.int64) * N * K
    v_ptr += i_bh.to(tl.int64) * N * V
    beta_ptr += i_bh.to(tl.int64) * N
    u_ptr += i_bh.to(tl.int64) * NP * V
    w_ptr += i_bh.to(tl.int64) * NP * K
    rows = tl.arange(0, C)
    t = i_c * C + rows
    beta = tl.load(beta_ptr + t, mask=t < N, other=0.0).to(tl.float32)
    a = tl.zeros([C, C], dtype=tl.float32)
    for j in range(0, tl.cdiv(K, BK)):
        k = load_rows(k_ptr, t, j * BK + tl.arange(0, BK), N, K).to(tl.float32)
        a += tl.dot(k * beta[:, None], tl.trans(k), input_precision=PREC)
    a = tl.where(rows[:, None] > rows[None, :], a, 0.0)
    # T = (I + A)⁻¹, row by row: T_i = e_i − Σ_{j<i} A_ij T_j (rows j < i are final already)
    inv = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
    for i in range(1, C):
        a_i = tl.sum(tl.where(rows[:, None] == i, a, 0.0), axis=0)  # row i of A, indexed by j
        row = tl.sum(tl.where(rows[:, None] == i, inv, 0.0), axis=0) - tl.sum(a_i[:, None] * inv, axis=0)
        inv = tl.where(rows[:, None] == i, row[None, :], inv)
    # the buffers are padded to NP rows: every row is written
    for j in range(0, tl.cdiv(K, BK)):
        cols = j * BK + tl.arange(0, BK)
        k = load_rows(k_ptr, t, cols, N, K).to(tl.float32)
        w = tl.dot(inv, k * beta[:, None], input_precision=PREC)
        tl.store(w_ptr + t[:, None] * K + cols[None, :], w, mask=cols[None, :] < K)
    for j in range(0, tl.cdiv(V, BV)):
        cols = j * BV + tl.arange(0, BV)
        v = load_rows(v_ptr, t, cols, N, V).to(tl.float32)
        u = tl.dot(inv, v * beta[:, None], input_precision=PREC)
        tl.store(u_ptr + t[:, None] * V + cols[None, :], u, mask=cols[None, :] < V)


def chunk_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    beta: torch.Tensor,
    *,
    normalize: bool = False,
    chunk: int = 64,
) -> torch.Tensor:
    """Causal delta rule over features q, k (B, H, N, F) (φ already applied), values v
    (B, H, N, D) and write strengths beta (B, H, N) -> (B, H, N, D) in v's dtype; equals
    `chunked.chunk_delta(q, k, v, beta, normalize=normalize, chunk=chunk)`."""
    check_qkv(q, k, v)
    if beta.shape != q.shape[:3]:
        raise ValueError(f"expected beta of shape {tuple(q.shape[:3])}, got {tuple(beta.shape)}")
    tiles = tiles_for(q, v, chunk, delta=True)
    b, h, n, d_k = q.shape
    d_v = v.shape[-1]
    out = torch.empty(b, h, n, d_v, dtype=v.dtype, device=v.device)
    if n == 0:
        return out
    q, k, v, beta = q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous()
    n_pad = triton.cdiv(n, chunk) * chunk
    u = torch.empty(b, h, n_pad, d_v, dtype=torch.float32, device=v.device)
    w = torch.empty(b, h, n_pad, d_k, dtype=torch.float32, device=v.device)
    _ut_kernel[(n_pad // chunk, b * h)](
        k,
        v,
        beta,
        u,
        w,
        n,
        n_pad,
        K=d_k,
        V=d_v,
        C=chunk,
        BK=tiles.block_k,
        BV=tiles.block_v,
        PREC=tiles.precision,
        num_warps=tiles.warps,
        num_stages=tiles.stages,
    )
    scan(q, k, u, w, out, tiles, feature="identity", sum_norm=False, normalize=normalize)
    return out

"""Chunked causal delta rule in Triton (Yang et al. 2024), forward only, in two kernels.

1. `_ut_kernel`, one program per (chunk, batch·head): the WY/UT representation of the chunk's
   C sequential writes. With A = tril(diag(β) K Kᵀ, −1), T = (I + A)⁻¹ by forward
   substitution over the C rows, then U = T diag(β) V and W = T diag(β) K (fp32 buffers).
2. `_delta_scan_kernel`, one program per (batch·head, block of BV value columns): the
   sequential hand-off between chunks with the memory S (F×BV, fp32) in registers:
   new = U − W S; out = Q S + tril(Q Kᵀ) new; S += Kᵀ new. With `normalize`, the attention
   denominator φ(q_t)·Σ_{s≤t} φ(k_s) is accumulated in the same pass.

The arithmetic is that of `attnbench.variants.linear.chunked.chunk_delta`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attnbench.kernels.linear_chunk import (
    check_chunk,
    check_qkv,
    chunk_step,
    dot_precision,
    feature_block,
    load_rows,
    value_block,
)
from attnbench.variants.linear.forms import EPS


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
    cols_k = tl.arange(0, BK)
    t = i_c * C + rows
    k = load_rows(k_ptr, t, cols_k, N, K).to(tl.float32)
    beta = tl.load(beta_ptr + t, mask=t < N, other=0.0).to(tl.float32)
    kb = k * beta[:, None]
    a = tl.where(rows[:, None] > rows[None, :], tl.dot(kb, tl.trans(k), input_precision=PREC), 0.0)
    # T = (I + A)⁻¹, row by row: T_i = e_i − Σ_{j<i} A_ij T_j (rows j < i are final already)
    inv = tl.where(rows[:, None] == rows[None, :], 1.0, 0.0)
    for i in range(1, C):
        a_i = tl.sum(tl.where(rows[:, None] == i, a, 0.0), axis=0)  # row i of A, indexed by j
        row = tl.sum(tl.where(rows[:, None] == i, inv, 0.0), axis=0) - tl.sum(a_i[:, None] * inv, axis=0)
        inv = tl.where(rows[:, None] == i, row[None, :], inv)
    t_store = i_c * C + rows  # the buffers are padded to NP rows: every row is written
    w = tl.dot(inv, kb, input_precision=PREC)
    tl.store(w_ptr + t_store[:, None] * K + cols_k[None, :], w, mask=cols_k[None, :] < K)
    for i_v in range(0, tl.cdiv(V, BV)):
        cols_v = i_v * BV + tl.arange(0, BV)
        v = load_rows(v_ptr, t, cols_v, N, V).to(tl.float32)
        u = tl.dot(inv, v * beta[:, None], input_precision=PREC)
        tl.store(u_ptr + t_store[:, None] * V + cols_v[None, :], u, mask=cols_v[None, :] < V)


@triton.jit
def _delta_scan_kernel(
    q_ptr,
    k_ptr,
    u_ptr,
    w_ptr,
    o_ptr,
    N,
    NP,
    K: tl.constexpr,
    V: tl.constexpr,
    C: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    NORMALIZE: tl.constexpr,
    PREC: tl.constexpr,
    EPS: tl.constexpr,
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    q_ptr += i_bh.to(tl.int64) * N * K
    k_ptr += i_bh.to(tl.int64) * N * K
    o_ptr += i_bh.to(tl.int64) * N * V
    u_ptr += i_bh.to(tl.int64) * NP * V
    w_ptr += i_bh.to(tl.int64) * NP * K
    rows = tl.arange(0, C)
    cols_k = tl.arange(0, BK)
    cols_v = i_v * BV + tl.arange(0, BV)
    causal = rows[:, None] >= rows[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    for i in range(0, tl.cdiv(N, C)):
        t = i * C + rows
        q = load_rows(q_ptr, t, cols_k, N, K).to(tl.float32)
        k = load_rows(k_ptr, t, cols_k, N, K).to(tl.float32)
        w = load_rows(w_ptr, t, cols_k, NP, K)  # the UT buffers hold NP (padded) rows
        u = load_rows(u_ptr, t, cols_v, NP, V)
        new = u - tl.dot(w, state, input_precision=PREC)  # what the chunk really writes
        out, state, z = chunk_step(q, k, new, state, z, causal, NORMALIZE, PREC, EPS)
        mask_v = (t[:, None] < N) & (cols_v[None, :] < V)
        tl.store(o_ptr + t[:, None] * V + cols_v[None, :], out.to(o_ptr.dtype.element_ty), mask=mask_v)


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
    check_chunk(chunk)
    b, h, n, d_k = q.shape
    d_v = v.shape[-1]
    block_k = feature_block(d_k)
    block_v = value_block(d_v, block_k)
    out = torch.empty(b, h, n, d_v, dtype=v.dtype, device=v.device)
    if n == 0:
        return out
    q, k, v, beta = q.contiguous(), k.contiguous(), v.contiguous(), beta.contiguous()
    chunks = triton.cdiv(n, chunk)
    n_pad = chunks * chunk
    u = torch.empty(b, h, n_pad, d_v, dtype=torch.float32, device=v.device)
    w = torch.empty(b, h, n_pad, d_k, dtype=torch.float32, device=v.device)
    prec = dot_precision(v.dtype)
    warps = 4 if block_k <= 64 else 8
    dims = {"K": d_k, "V": d_v, "C": chunk, "BK": block_k, "BV": block_v, "PREC": prec, "num_warps": warps}
    _ut_kernel[(chunks, b * h)](k, v, beta, u, w, n, n_pad, **dims)
    _delta_scan_kernel[(triton.cdiv(d_v, block_v), b * h)](
        q, k, u, w, out, n, n_pad, NORMALIZE=normalize, EPS=EPS, **dims
    )
    return out

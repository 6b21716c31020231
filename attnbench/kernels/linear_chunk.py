"""Chunked causal linear attention (sum rule) in Triton, forward only, with the feature map
and the normalisation fused.

One program per (batch·head, block of BV value columns) walks the sequence chunk by chunk,
carrying the memory S = Σ φ(k)ᵀ v (F×BV) and, for attention normalisation, z = Σ φ(k) in
fp32 registers. Per chunk: out = φ(Q) S + tril(φ(Q) φ(K)ᵀ) V, then S += φ(K)ᵀ V, the same
arithmetic as `attnbench.variants.linear.chunked.chunk_sum`. Head dimensions that are not
powers of two are padded to one (masked loads; padded features are zero).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attnbench.errors import Unsupported
from attnbench.kernels import check_chunk, check_features
from attnbench.variants.linear.forms import EPS

FEATURE_MAPS = ("identity", "elu")
NORMS = ("none", "attn", "sum")


def feature_block(features: int) -> int:
    """The padded feature dimension: a power of two ≥ 16, as tl.dot needs."""
    check_features(features)
    return max(16, triton.next_power_of_2(features))


def value_block(values: int, features_block: int) -> int:
    """Value columns per program: ≥ 16 for tl.dot, fewer when the state is wide."""
    return max(16, min(64, triton.next_power_of_2(values), 8192 // features_block))


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs get exact fp32 products; 16-bit inputs run their fp32 products as tf32."""
    return "ieee" if dtype == torch.float32 else "tf32"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or q.shape != k.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"expected q, k (B, H, N, F) and v (B, H, N, D), got {q.shape}, {k.shape}, {v.shape}"
        )
    if v.dtype == torch.float64:
        raise Unsupported("Triton chunk kernels do not support float64")


@triton.jit
def _features(x, mask, FEATURE: tl.constexpr, SUM_NORM: tl.constexpr, EPS: tl.constexpr):
    """φ of a loaded (C, BK) tile in fp32; masked (padded) entries are zero features."""
    x = x.to(tl.float32)
    if FEATURE == "elu":
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    x = tl.where(mask, x, 0.0)
    if SUM_NORM:
        x = x / (tl.sum(x, axis=1)[:, None] + EPS)
    return x


@triton.jit
def load_rows(ptr, t, cols, N, WIDTH: tl.constexpr):
    """The (len(t), len(cols)) tile of a row-major (N, WIDTH) matrix, zero outside it."""
    mask = (t[:, None] < N) & (cols[None, :] < WIDTH)
    return tl.load(ptr + t[:, None] * WIDTH + cols[None, :], mask=mask, other=0.0)


@triton.jit
def chunk_step(
    q, k, writes, state, z, causal, NORMALIZE: tl.constexpr, PREC: tl.constexpr, EPS: tl.constexpr
):
    """One chunk of causal linear attention over fp32 tiles: read the memory `state` found on
    entry plus the masked in-chunk part, then add the chunk's `writes` (v for the sum rule,
    U − W·S for the delta rule). Returns (out, state, z)."""
    scores = tl.where(causal, tl.dot(q, tl.trans(k), input_precision=PREC), 0.0)
    out = tl.dot(q, state, input_precision=PREC) + tl.dot(scores, writes, input_precision=PREC)
    if NORMALIZE:
        den = tl.sum(scores, axis=1) + tl.sum(q * z[None, :], axis=1)
        out = out / (den[:, None] + EPS)
        z += tl.sum(k, axis=0)
    state += tl.dot(tl.trans(k), writes, input_precision=PREC)
    return out, state, z


@triton.jit
def _chunk_sum_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    N,
    K: tl.constexpr,
    V: tl.constexpr,
    C: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    FEATURE: tl.constexpr,
    SUM_NORM: tl.constexpr,
    ATTN_NORM: tl.constexpr,
    PREC: tl.constexpr,
    EPS: tl.constexpr,
):
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    q_ptr += i_bh.to(tl.int64) * N * K
    k_ptr += i_bh.to(tl.int64) * N * K
    v_ptr += i_bh.to(tl.int64) * N * V
    o_ptr += i_bh.to(tl.int64) * N * V
    rows = tl.arange(0, C)
    cols_k = tl.arange(0, BK)
    cols_v = i_v * BV + tl.arange(0, BV)
    causal = rows[:, None] >= rows[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float32)
    z = tl.zeros([BK], dtype=tl.float32)
    for i in range(0, tl.cdiv(N, C)):
        t = i * C + rows
        mask_k = (t[:, None] < N) & (cols_k[None, :] < K)
        q = _features(load_rows(q_ptr, t, cols_k, N, K), mask_k, FEATURE, SUM_NORM, EPS)
        k = _features(load_rows(k_ptr, t, cols_k, N, K), mask_k, FEATURE, SUM_NORM, EPS)
        v = load_rows(v_ptr, t, cols_v, N, V).to(tl.float32)
        out, state, z = chunk_step(q, k, v, state, z, causal, ATTN_NORM, PREC, EPS)
        mask_v = (t[:, None] < N) & (cols_v[None, :] < V)
        tl.store(o_ptr + t[:, None] * V + cols_v[None, :], out.to(o_ptr.dtype.element_ty), mask=mask_v)


def chunk_linear_attn(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    feature_map: str = "identity",
    norm: str = "none",
    chunk: int = 64,
) -> torch.Tensor:
    """Causal linear attention, sum rule: raw q, k (B, H, N, K) and v (B, H, N, V) -> (B, H, N, V)
    in v's dtype. φ (`feature_map`: identity | elu, i.e. elu(x) + 1) and `norm` (none | attn |
    sum) are applied in the kernel; equals `chunked.chunk_sum(φq, φk, v, normalize=norm == "attn")`
    with φ divided by its sum (+EPS) for norm="sum"."""
    if feature_map not in FEATURE_MAPS:
        raise Unsupported(
            f"chunk_linear_attn fuses the feature maps {', '.join(FEATURE_MAPS)}, not {feature_map!r}"
        )
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    check_qkv(q, k, v)
    check_chunk(chunk)
    b, h, n, d_k = q.shape
    d_v = v.shape[-1]
    block_k = feature_block(d_k)
    block_v = value_block(d_v, block_k)
    out = torch.empty(b, h, n, d_v, dtype=v.dtype, device=v.device)
    if n == 0:
        return out
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    grid = (triton.cdiv(d_v, block_v), b * h)
    _chunk_sum_kernel[grid](
        q,
        k,
        v,
        out,
        n,
        K=d_k,
        V=d_v,
        C=chunk,
        BK=block_k,
        BV=block_v,
        FEATURE=feature_map,
        SUM_NORM=norm == "sum",
        ATTN_NORM=norm == "attn",
        PREC=dot_precision(v.dtype),
        EPS=EPS,
        num_warps=4 if block_k <= 64 else 8,
    )
    return out

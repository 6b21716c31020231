"""Chunked causal linear attention in Triton, forward only: the scan both update rules share,
and the sum rule's launcher with the feature map and the normalisation fused.

`_chunk_scan_kernel`: one program per (block of BV value columns, batch·head) walks the sequence
chunk by chunk. The memory S (F×BV) and the key sum z (F) live in an fp32 scratch the program
owns (L2-resident), cut into BK-row tiles, so that no tile a `tl.dot` stages through shared
memory grows with F: every configuration fits a device's budget (`kernels.budget`). Per chunk,
over the F tiles: Q S, Q Kᵀ (and the delta rule's W S); then X = V (sum rule) or U − W S (delta
rule), out = Q S + tril(Q Kᵀ) X, and over the F tiles again: S += Kᵀ X. The same arithmetic as
`attnbench.variants.linear.chunked.chunk_sum` and `chunk_delta`. Head dimensions that are not
powers of two are padded (masked loads; padded features are zero).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from attnbench.errors import Unsupported
from attnbench.kernels import budget, check_chunk
from attnbench.variants.linear.forms import EPS

FEATURE_MAPS = ("identity", "elu")
NORMS = ("none", "attn", "sum")


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


def tiles_for(q: torch.Tensor, v: torch.Tensor, chunk: int, *, delta: bool) -> budget.Tiles:
    """The tiles for these inputs on their device: the largest that fit its shared memory."""
    check_chunk(chunk)
    prec = dot_precision(v.dtype)
    return budget.choose_tiles(q.shape[-1], v.shape[-1], chunk, delta=delta, precision=prec, device=v.device)


@triton.jit
def load_rows(ptr, t, cols, N, WIDTH: tl.constexpr):
    """The (len(t), len(cols)) tile of a row-major (N, WIDTH) matrix, zero outside it."""
    mask = (t[:, None] < N) & (cols[None, :] < WIDTH)
    return tl.load(ptr + t[:, None] * WIDTH + cols[None, :], mask=mask, other=0.0)


@triton.jit
def _features(ptr, t, cols, N, K: tl.constexpr, FEATURE: tl.constexpr):
    """φ of one (C, BK) tile of raw inputs in fp32; entries outside the matrix are zero features."""
    x = load_rows(ptr, t, cols, N, K).to(tl.float32)
    if FEATURE == "elu":
        x = tl.where(x > 0, x + 1.0, tl.exp(tl.minimum(x, 0.0)))
    return tl.where((t[:, None] < N) & (cols[None, :] < K), x, 0.0)


@triton.jit
def _feature_tile(ptr, t, j, N, K: tl.constexpr, BK: tl.constexpr, FEATURE: tl.constexpr, scale):
    """Tile j of φ (divided by `scale` per row: the sum normalisation, or ones)."""
    return _features(ptr, t, j * BK + tl.arange(0, BK), N, K, FEATURE) / scale[:, None]


@triton.jit
def _feature_sums(ptr, t, N, K: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, FEATURE: tl.constexpr):
    """Σ_f φ(x)_f for every row of the chunk, over all feature tiles (sum normalisation)."""
    total = tl.zeros([C], dtype=tl.float32)
    for j in range(0, tl.cdiv(K, BK)):
        total += tl.sum(_features(ptr, t, j * BK + tl.arange(0, BK), N, K, FEATURE), axis=1)
    return total


@triton.jit
def _chunk_scan_kernel(
    q_ptr,
    k_ptr,
    x_ptr,
    w_ptr,
    o_ptr,
    s_ptr,
    z_ptr,
    N,
    NP,
    K: tl.constexpr,
    V: tl.constexpr,
    C: tl.constexpr,
    BK: tl.constexpr,
    BV: tl.constexpr,
    FEATURE: tl.constexpr,
    SUM_NORM: tl.constexpr,
    NORMALIZE: tl.constexpr,
    DELTA: tl.constexpr,
    PREC: tl.constexpr,
    EPS: tl.constexpr,
):
    """x: the values v (B·H, N, V) for the sum rule, the UT buffer U (B·H, NP, V) for the delta
    rule, with W (B·H, NP, K) at w_ptr. s, z: zeroed fp32 scratch, (B·H, NV, KP, BV) and
    (B·H, NV, KP) for KP = K rounded up to BK."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    KP: tl.constexpr = tl.cdiv(K, BK) * BK
    q_ptr += i_bh.to(tl.int64) * N * K
    k_ptr += i_bh.to(tl.int64) * N * K
    o_ptr += i_bh.to(tl.int64) * N * V
    if DELTA:
        x_ptr += i_bh.to(tl.int64) * NP * V
        w_ptr += i_bh.to(tl.int64) * NP * K
    else:
        x_ptr += i_bh.to(tl.int64) * N * V
    own = i_bh.to(tl.int64) * tl.num_programs(0) + i_v
    s_ptr += own * KP * BV
    z_ptr += own * KP
    rows = tl.arange(0, C)
    rows_k, cols_s = tl.arange(0, BK), tl.arange(0, BV)
    cols_v = i_v * BV + cols_s
    causal = rows[:, None] >= rows[None, :]
    for i in range(0, tl.cdiv(N, C)):
        t = i * C + rows
        scale_q = tl.full([C], 1.0, tl.float32)
        scale_k = tl.full([C], 1.0, tl.float32)
        if SUM_NORM:
            scale_q = _feature_sums(q_ptr, t, N, K, C, BK, FEATURE) + EPS
            scale_k = _feature_sums(k_ptr, t, N, K, C, BK, FEATURE) + EPS
        qs = tl.zeros([C, BV], dtype=tl.float32)
        qk = tl.zeros([C, C], dtype=tl.float32)
        ws = tl.zeros([C, BV], dtype=tl.float32)
        den = tl.zeros([C], dtype=tl.float32)
        for j in range(0, tl.cdiv(K, BK)):  # reads of the memory, tile by tile
            q = _feature_tile(q_ptr, t, j, N, K, BK, FEATURE, scale_q)
            k = _feature_tile(k_ptr, t, j, N, K, BK, FEATURE, scale_k)
            s = tl.load(s_ptr + (j * BK + rows_k)[:, None] * BV + cols_s[None, :])
            qs += tl.dot(q, s, input_precision=PREC)
            qk += tl.dot(q, tl.trans(k), input_precision=PREC)
            if DELTA:
                w = load_rows(w_ptr, t, j * BK + rows_k, NP, K)
                ws += tl.dot(w, s, input_precision=PREC)
            if NORMALIZE:
                den += tl.sum(q * tl.load(z_ptr + j * BK + rows_k)[None, :], axis=1)
        if DELTA:
            x = load_rows(x_ptr, t, cols_v, NP, V) - ws  # what the chunk really writes: U − W S
        else:
            x = load_rows(x_ptr, t, cols_v, N, V).to(tl.float32)
        scores = tl.where(causal, qk, 0.0)
        out = qs + tl.dot(scores, x, input_precision=PREC)
        if NORMALIZE:
            out = out / (den + tl.sum(scores, axis=1) + EPS)[:, None]
        mask_v = (t[:, None] < N) & (cols_v[None, :] < V)
        tl.store(o_ptr + t[:, None] * V + cols_v[None, :], out.to(o_ptr.dtype.element_ty), mask=mask_v)
        tl.debug_barrier()  # every thread's reads of S done before any writes it
        for j in range(0, tl.cdiv(K, BK)):  # writes: S += Kᵀ X, z += Σ K
            k = _feature_tile(k_ptr, t, j, N, K, BK, FEATURE, scale_k)
            at = s_ptr + (j * BK + rows_k)[:, None] * BV + cols_s[None, :]
            tl.store(at, tl.load(at) + tl.dot(tl.trans(k), x, input_precision=PREC))
            if NORMALIZE:
                tl.store(z_ptr + j * BK + rows_k, tl.load(z_ptr + j * BK + rows_k) + tl.sum(k, axis=0))
        tl.debug_barrier()  # the writes done before the next chunk reads


def scan(q, k, x, w, out, tiles: budget.Tiles, *, feature: str, sum_norm: bool, normalize: bool) -> None:
    """Launch `_chunk_scan_kernel` (w None: the sum rule, x the values)."""
    b, h, n, d_k = q.shape
    d_v = out.shape[-1]
    values = triton.cdiv(d_v, tiles.block_v)
    padded = triton.cdiv(d_k, tiles.block_k) * tiles.block_k
    s = torch.zeros(b * h, values, padded, tiles.block_v, dtype=torch.float32, device=q.device)
    z = torch.zeros(b * h, values, padded, dtype=torch.float32, device=q.device)
    _chunk_scan_kernel[(values, b * h)](
        q,
        k,
        x,
        q if w is None else w,
        out,
        s,
        z,
        n,
        x.shape[2],
        K=d_k,
        V=d_v,
        C=tiles.chunk,
        BK=tiles.block_k,
        BV=tiles.block_v,
        FEATURE=feature,
        SUM_NORM=sum_norm,
        NORMALIZE=normalize,
        DELTA=w is not None,
        PREC=tiles.precision,
        EPS=EPS,
        num_warps=tiles.warps,
        num_stages=tiles.stages,
    )


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
    tiles = tiles_for(q, v, chunk, delta=False)
    out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    if v.shape[2] == 0:
        return out
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    scan(q, k, v, None, out, tiles, feature=feature_map, sum_norm=norm == "sum", normalize=norm == "attn")
    return out

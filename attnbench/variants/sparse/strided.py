"""sparse.strided: the strided pattern in two sub-quadratic parts, never holding N×N.

The local window is the blocked form of `sparse.local`; the strided keys of query i are the
positions ≡ i (mod s), one column of the sequence laid out as an (N/s) × s grid, so they cost
(N/s)² per column, N²/s in all. The two key sets are disjoint (the strided part skips keys
inside the window) and merge through their softmax parts: max, sum of exponentials, and
weighted values."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.sparse.local import local_window_parts
from attnbench.variants.sparse.patterns import Strided


def _columns(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, H, N, D) -> (B, H, s, N/s, D): column r holds positions r, r + s, r + 2s, …"""
    b, h, n, d = x.shape
    rows = -(-n // stride)
    return F.pad(x, (0, 0, 0, rows * stride - n)).view(b, h, rows, stride, d).transpose(2, 3)


def strided_attention(q, k, v, *, window: int, stride: int, causal: bool) -> torch.Tensor:
    b, h, n, d = q.shape
    top_l, sum_l, out_l = local_window_parts(q, k, v, window=window, causal=causal)
    qc, kc, vc = (_columns(t, stride) for t in (q, k, v))
    rows = qc.shape[3]
    scores = qc @ kc.transpose(-1, -2) * (1.0 / math.sqrt(d))  # (B, H, s, rows, rows)
    t = torch.arange(rows, device=q.device)
    r = torch.arange(stride, device=q.device)[:, None, None]
    gap = (t[:, None] - t[None, :]) * stride  # i − j
    ok = (gap.abs() >= window) & (t[None, None, :] * stride + r < n)  # outside the window, real keys
    if causal:
        ok &= gap >= 0
    scores = scores.masked_fill(~ok, float("-inf"))
    top_s = scores.amax(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).min)  # a column may be empty
    weights = torch.exp(scores - top_s)
    out_s = weights @ vc

    def rows_first(x: torch.Tensor) -> torch.Tensor:  # (B, H, s, rows, X) -> (B, H, N, X)
        return x.transpose(2, 3).reshape(b, h, rows * stride, x.shape[-1])[:, :, :n]

    top_s, sum_s, out_s = rows_first(top_s), rows_first(weights.sum(-1, keepdim=True)), rows_first(out_s)
    top = torch.maximum(top_l, top_s)
    scale_l, scale_s = torch.exp(top_l - top), torch.exp(top_s - top)
    return (out_l * scale_l + out_s * scale_s) / (sum_l * scale_l + sum_s * scale_s)


@register("sparse.strided")
class StridedBlocked(Strided):
    """Strided attention as a blocked window plus strided columns: O(N·w + N²/s), no N×N."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        p = self.hparams
        return strided_attention(q, k, v, window=int(p["window"]), stride=int(p["stride"]), causal=causal)

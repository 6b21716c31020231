"""sparse.local: a sliding window computed block by block, never holding N×N.

Queries are cut into blocks of w; block b reads the key blocks b−1 and b (and b+1 when not
causal) through `unfold`, a view, so scores are (N/w)·w·2w (3w) per head: linear in N."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.sparse.patterns import LocalWindow


def local_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int, causal: bool, tile_bytes: int = 8 << 20
) -> torch.Tensor:
    """Heads are processed in groups whose scores fit in `tile_bytes` (cache-sized tiles: at
    N = 8192, w = 256 one head's scores are 16 MiB, and eight at once measured 4× slower)."""
    b, h, n, d = q.shape
    rows = b * h
    per_row = -(-n // window) * window * (3 if not causal else 2) * window * q.element_size()
    group = max(1, tile_bytes // per_row)
    if group >= rows:
        return _local_window(q, k, v, window=window, causal=causal)
    qf, kf, vf = (t.reshape(rows, 1, n, d) for t in (q, k, v))
    outs = [
        _local_window(qf[i : i + group], kf[i : i + group], vf[i : i + group], window=window, causal=causal)
        for i in range(0, rows, group)
    ]
    return torch.cat(outs).view(b, h, n, d)


def _local_window(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int, causal: bool):
    _, total, out = local_window_parts(q, k, v, window=window, causal=causal)
    return out / total


def local_window_parts(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window: int, causal: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The window's softmax in parts, per query: the row maximum m (B, H, N, 1), Σ exp(s − m)
    (B, H, N, 1) and Σ exp(s − m)·v (B, H, N, D), so another key set can be merged in."""
    b, h, n, d = q.shape
    w = window
    blocks = -(-n // w)
    pad = blocks * w - n
    after = w if not causal else 0
    span = 2 * w + after  # keys a query block reads: the block before, its own (and the next)
    qb = F.pad(q, (0, 0, 0, pad)).view(b, h, blocks, w, d)
    kw = F.pad(k, (0, 0, w, pad + after)).unfold(2, span, w)  # (B, H, blocks, D, span), a view
    vw = F.pad(v, (0, 0, w, pad + after)).unfold(2, span, w)
    scores = torch.matmul(qb, kw) * (1.0 / math.sqrt(d))  # (B, H, blocks, w, span)
    a = torch.arange(w, device=q.device)[:, None]  # query offset in its block
    c = torch.arange(span, device=q.device)[None, :]  # key offset in the window
    offset = a + w - c  # i − j
    band = (offset >= 0) & (offset < w) if causal else offset.abs() < w
    key_pos = torch.arange(blocks, device=q.device)[:, None, None] * w - w + c  # absolute j
    ok = band & (key_pos >= 0) & (key_pos < n)  # (blocks, w, span)
    scores = scores.masked_fill(~ok, float("-inf"))
    top = scores.amax(-1, keepdim=True)  # finite: a query always reads itself
    weights = torch.exp(scores - top)
    out = torch.matmul(weights, vw.transpose(-1, -2))  # (B, H, blocks, w, D)
    parts = (top, weights.sum(-1, keepdim=True), out)
    return tuple(x.reshape(b, h, blocks * w, x.shape[-1])[:, :, :n] for x in parts)


@register("sparse.local")
class LocalBlocked(LocalWindow):
    """Sliding-window attention, blocked: O(N·w) time and memory, no N×N tensor."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        window = int(self.hparams["window"])
        return local_window_attention(q, k, v, window=window, causal=causal)

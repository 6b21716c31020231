"""Exact softmax attention in float64, the oracle for every exact-softmax variant."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Pattern = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (rows[:, None], keys[None, :]) -> bool


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    scale: float | None = None,
    rows: torch.Tensor | None = None,
    allowed: Pattern | None = None,
    prepare: Callable | None = None,
    block: int = 1024,
) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v, computed in float64.

    q, k, v: (B, H, N, D). `rows` (1-D positions) restricts the output to those query rows,
    so errors at long N can be checked on a sample at O(len(rows)·N) cost; causal masking uses
    the rows' true positions. `allowed` restricts each query to a pattern of keys (the oracle of
    the sparse family, registered as "masked_softmax"). `prepare(q, k) -> (q, k, bias_of_rows)`
    applies a positional scheme (embedding, rotation, and a score bias for given query rows).
    Queries are processed `block` rows at a
    time, so no N×N tensor is built. Returns (B, H, len(rows) or N, D) in float64.
    """
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    bias_of = None
    if prepare is not None:
        q, k, bias_of = prepare(q, k)
    n_q = q.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    positions = torch.arange(n_q, device=q.device) if rows is None else rows.to(q.device)
    key_pos = torch.arange(k.shape[-2], device=q.device)
    outs = []
    for start in range(0, positions.numel(), block):
        pos = positions[start : start + block]
        scores = q[..., pos, :] @ k.transpose(-2, -1) * scale  # (B, H, b, N)
        if bias_of is not None:
            scores = scores + bias_of(pos)
        if causal:
            scores = scores.masked_fill(key_pos[None, :] > pos[:, None], float("-inf"))
        if allowed is not None:
            scores = scores.masked_fill(~allowed(pos[:, None], key_pos[None, :]), float("-inf"))
        outs.append(torch.softmax(scores, dim=-1) @ v)
    return torch.cat(outs, dim=-2)

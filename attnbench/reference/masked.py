"""Softmax attention restricted to a pattern of allowed (query, key) pairs, in float64: the
oracle of the sparse family. The pattern is a function of positions, so the oracle builds
only the rows it is asked for."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Pattern = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (rows[:, None], keys[None, :]) -> bool


def masked_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    rows: torch.Tensor | None = None,
    allowed: Pattern,
    block: int = 1024,
) -> torch.Tensor:
    """softmax over the allowed keys of each query (and j ≤ i when causal), float64.
    q, k, v: (B, H, N, D); returns (B, H, len(rows) or N, D)."""
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1])
    positions = torch.arange(q.shape[-2], device=q.device) if rows is None else rows.to(q.device)
    key_pos = torch.arange(k.shape[-2], device=q.device)
    outs = []
    for start in range(0, positions.numel(), block):
        pos = positions[start : start + block]
        ok = allowed(pos[:, None], key_pos[None, :])
        if causal:
            ok = ok & (key_pos[None, :] <= pos[:, None])
        scores = (q[..., pos, :] @ k.transpose(-2, -1) * scale).masked_fill(~ok, float("-inf"))
        outs.append(torch.softmax(scores, dim=-1) @ v)
    return torch.cat(outs, dim=-2)

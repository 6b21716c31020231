"""The Compressive Transformer's attention in float64, one query at a time: the oracle of
`memory.compressive`, written from the definition (which keys and pooled slots a query at
position i reads), not from the segment loop it checks."""

from __future__ import annotations

import math

import torch


def compressive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment: int,
    memory: int,
    compressed: int,
    rate: int,
    causal: bool = True,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    n = q.shape[-2]
    rows = torch.arange(n) if rows is None else rows.cpu()
    outs = []
    for i in rows.tolist():
        start = (i // segment) * segment  # the segment of query i
        recent = max(0, start - memory)  # keys from here on are read as they are
        groups = min(compressed, recent // rate)  # the newest groups of `rate` older keys, pooled
        pooled = [slice(recent - (g + 1) * rate, recent - g * rate) for g in reversed(range(groups))]
        keys = [k[:, :, s].mean(2) for s in pooled] + [k[:, :, j] for j in range(recent, i + 1)]
        values = [v[:, :, s].mean(2) for s in pooled] + [v[:, :, j] for j in range(recent, i + 1)]
        kk, vv = torch.stack(keys, 2), torch.stack(values, 2)
        weights = torch.softmax(q[:, :, i : i + 1] @ kk.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        outs.append(weights @ vv)
    return torch.cat(outs, 2)

"""sparse.star: the Star pattern gathered, never holding N×N.

Every token but the relay reads its 2r + 1 neighbours (an `unfold` view of the padded keys)
and the relay token: scores are (N, 2r + 2) per head. The relay's own row reads every key
(non-causal) or itself (causal), one O(N) row."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.sparse.patterns import Star


def star_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, neighbours: int, causal: bool):
    n, d, r = q.shape[-2], q.shape[-1], neighbours
    scale = 1.0 / math.sqrt(d)
    span = 2 * r + 1
    kn = F.pad(k, (0, 0, r, r)).unfold(2, span, 1)  # (B, H, N, D, span): keys i − r … i + r
    vn = F.pad(v, (0, 0, r, r)).unfold(2, span, 1)
    near = torch.einsum("bhnd,bhnds->bhns", q, kn)
    relay = q @ k[:, :, :1].transpose(-1, -2)  # (B, H, N, 1)
    i = torch.arange(n, device=q.device)[:, None]
    j = i - r + torch.arange(span, device=q.device)[None, :]
    ok = (j >= 0) & (j < n) & (j != 0)  # j = 0 is read through the relay column
    if causal:
        ok &= j <= i
    scores = torch.cat([near.masked_fill(~ok, float("-inf")), relay], dim=-1) * scale
    probs = torch.softmax(scores, dim=-1)
    out = torch.einsum("bhns,bhnds->bhnd", probs[..., :span], vn) + probs[..., span:] * v[:, :, :1]
    if not causal:  # the relay reads every token
        first = torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) * scale, dim=-1) @ v
        out = torch.cat([first, out[:, :, 1:]], dim=2)
    return out


@register("sparse.star")
class StarGathered(Star):
    """Star attention gathered: O(N·r) time and memory, no N×N tensor."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        return star_attention(q, k, v, neighbours=int(self.hparams["neighbours"]), causal=causal)

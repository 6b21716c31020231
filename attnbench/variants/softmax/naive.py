"""softmax.naive: the textbook form, materialising the N×N scores."""

from __future__ import annotations

import math

import torch

from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention


@register("softmax.naive")
class NaiveSoftmax(SoftmaxAttention):
    """softmax(QKᵀ/√d)V with the full N×N score matrix in memory (the readable baseline)."""

    takes_bias = True

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        n_q, n_k = q.shape[-2], k.shape[-2]
        scores = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))  # (B, H, Nq, Nk)
        if bias is not None:
            scores = scores + bias
        if causal:
            mask = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu_(n_k - n_q + 1)
            scores.masked_fill_(mask, float("-inf"))
        return torch.matmul(torch.softmax(scores, dim=-1), v)

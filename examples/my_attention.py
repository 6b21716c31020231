"""A variant of your own, registered: one class, one decorator. Sigmoid attention
(Ramapuram et al. 2024, https://arxiv.org/abs/2409.04431): sigmoid(QKᵀ/√d + b)V with b = −log N.

    attnbench run --plugin examples/my_attention.py mine.sigmoid softmax.sdpa --seq-len 1024 4096
"""

import math

import torch

from attnbench.registry import Variant, register


@register("mine.sigmoid")
class SigmoidAttention(Variant):
    """sigmoid(QKᵀ/√d − log N)V: no softmax normalisation across keys."""

    def forward(self, q, k, v, *, causal=False):
        n = k.shape[-2]
        scores = torch.matmul(q, k.transpose(-2, -1)).mul_(1 / math.sqrt(q.shape[-1])).sub_(math.log(n))
        weights = torch.sigmoid(scores)  # (B, H, N, N)
        return torch.matmul(weights.tril() if causal else weights, v)

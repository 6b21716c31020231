"""A plugin variant with maths of its own (softmax with a temperature), written from the
README's "Adding a variant" example. `matched=True` hands the oracle the same scale, so the
oracle computes what the variant does; `matched=False` checks it against plain softmax."""

import math

import torch

from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention


@register("softmax.tempered")
class Tempered(SoftmaxAttention):
    """Softmax attention with a temperature: softmax(q kᵀ / (τ √d)) v."""

    params = {**SoftmaxAttention.params, "temperature": 2.0, "matched": False}

    def scale(self) -> float:
        return 1 / (self.hparams["temperature"] * math.sqrt(self.d_head))

    def attend(self, q, k, v, *, causal, bias):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=self.scale())

    def oracle_kwargs(self):
        kwargs = super().oracle_kwargs()
        return {**kwargs, "scale": self.scale()} if self.hparams["matched"] else kwargs

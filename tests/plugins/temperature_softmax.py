"""A plugin variant with maths of its own (softmax with a temperature), written from the
README's "Adding a variant" example. `matched=True` hands the oracle the same scale, so the
oracle computes what the variant does; `matched=False` checks it against plain softmax."""

import math
from typing import ClassVar

import torch

from attnbench import reference
from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention


@register("softmax.tempered")
class Tempered(SoftmaxAttention):
    """Softmax attention with a temperature: softmax(q kᵀ / (τ √d)) v."""

    params: ClassVar = {**SoftmaxAttention.params, "temperature": 2.0, "matched": False}

    def scale(self) -> float:
        return 1 / (self.hparams["temperature"] * math.sqrt(self.d_head))

    def attend(self, q, k, v, *, causal, bias):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=self.scale())

    def oracle_kwargs(self):
        kwargs = super().oracle_kwargs()
        return {**kwargs, "scale": self.scale()} if self.hparams["matched"] else kwargs


@reference.register("tempered_softmax")
def tempered_softmax(q, k, v, *, causal=False, rows=None, temperature=1.0):
    """The plugin's own float64 oracle, from the definition: softmax(q kᵀ / (τ √d)) v for the
    query rows `rows` (all when None), a causal query reading the keys up to its position."""
    q, k, v = (t.double() for t in (q, k, v))
    rows = torch.arange(q.shape[-2]) if rows is None else rows.cpu()
    scores = q[..., rows, :] @ k.transpose(-1, -2) / (temperature * math.sqrt(q.shape[-1]))
    if causal:
        scores = scores.masked_fill(torch.arange(k.shape[-2]) > rows[:, None], float("-inf"))
    return scores.softmax(-1) @ v


@register("softmax.tempered_own")
class TemperedOwnOracle(Tempered):
    """Softmax with a temperature, checked against an oracle the plugin supplies."""

    reference = "tempered_softmax"

    def oracle_kwargs(self):
        return {"temperature": self.hparams["temperature"]}

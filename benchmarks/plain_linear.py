"""`bench.elu_stream`: `linear.elu` with its fused CPU kernel turned off, i.e. the eager
streamed chunked form (`variants/linear/chunk_blocks.py`) that runs where the kernel cannot be
built; timed beside the kernel.

`bench.plain_chunk`: the chunked sum rule as a plain PyTorch loop, the ~20 lines anyone would
write first: one chunk at a time, every (batch, head) batched, φ = elu + 1, attention
normalisation. Timed beside `linear.elu` by `benchmarks/linear_speed.py`, it shows what an
unoptimised form of the same arithmetic (and the same FLOP count) reaches on this machine.

Plugins (loaded through ATTNBENCH_PLUGINS by the benchmark), not registered variants of the
library: yardsticks, not forms anyone should choose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.linear.variants import LinearElu


@register("bench.elu_stream", family="linear")
class EluStream(LinearElu):
    """linear.elu's eager streamed chunked form (no fused CPU kernel)."""

    cpu_kernel = False


@register("bench.plain_chunk", family="linear")
class PlainChunk(LinearElu):
    """linear.elu's chunked form, written plainly (sum rule, attention normalisation, fwd)."""

    modes = ("fwd",)
    causal_modes = (True,)

    def compute(self, q, k, v, *, causal: bool, beta=None) -> torch.Tensor:
        b, h, n, d = q.shape
        c = self.chunk
        out = torch.empty_like(v)
        memory = q.new_zeros(b * h, d, d)  # Σ φ(k)ᵀ v over the chunks before
        key_sum = q.new_zeros(b * h, 1, d)  # Σ φ(k)
        q3, k3, v3, o3 = (t.reshape(b * h, n, d) for t in (q, k, v, out))
        for s in range(0, n, c):
            qi, ki, vi = F.elu(q3[:, s : s + c]) + 1, F.elu(k3[:, s : s + c]) + 1, v3[:, s : s + c]
            scores = torch.bmm(qi, ki.mT).tril_()
            num = torch.bmm(scores, vi) + torch.bmm(qi, memory)
            den = scores.sum(-1, keepdim=True) + torch.bmm(qi, key_sum.mT)
            o3[:, s : s + c] = num / (den + 1e-6)
            memory += torch.bmm(ki.mT, vi)
            key_sum += ki.sum(1, keepdim=True)
        return out

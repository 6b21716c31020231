"""external.xformers: xformers.ops.memory_efficient_attention (CUDA)."""

from __future__ import annotations

import torch

from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention, missing_package


@register("external.xformers", family="softmax")
class XFormersMemoryEfficient(SoftmaxAttention):
    """xformers memory_efficient_attention, dispatching to its best kernel for the GPU."""

    devices = ("cuda",)
    dtypes = ("float32", "bfloat16", "float16")

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return missing_package("xformers", "xformers")

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        import xformers.ops as xops

        bias = xops.LowerTriangularMask() if causal else None
        # xformers takes (B, N, H, D)
        out = xops.memory_efficient_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias
        )
        return out.transpose(1, 2)

"""external.flash_attn: the flash-attn package's flash_attn_func (Dao-AILab, CUDA)."""

from __future__ import annotations

import torch

from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention, missing_package


@register("external.flash_attn", family="softmax")
class FlashAttnPackage(SoftmaxAttention):
    """flash_attn.flash_attn_func from the flash-attn package (FA2, or FA3 on Hopper builds)."""

    devices = ("cuda",)
    dtypes = ("bfloat16", "float16")

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return missing_package("flash_attn", "flash-attn")

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        from flash_attn import flash_attn_func

        # flash-attn takes (B, N, H, D)
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=causal)
        return out.transpose(1, 2)

"""external.fla_linear / external.fla_delta: fla-core's Triton kernels (flash-linear-attention,
Yang et al.) behind the same layer as `linear.elu`, so they meet our forms in one sweep.

φ, sum normalisation and the learned β are computed by our layer in PyTorch; fla computes the
chunked recurrence. fla takes (B, N, H, D) and a query scale, which we set to 1 (attention
normalisation cancels it, and our forms use none). CUDA with fla-core installed only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants.linear.variants import LinearElu
from attnbench.variants.softmax.common import missing_package


class _FlaAdapter(LinearElu):
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "bfloat16", "float16")
    causal_modes: ClassVar[tuple[bool, ...]] = (True,)
    rule_fixed: ClassVar[str] = "sum"

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return missing_package("fla", "fla-core")

    def check(self, case: Case) -> None:
        super().check(case)
        if self.rule != self.rule_fixed or self.form != "chunk":
            raise Unsupported(f"{self.name} runs fla's chunked {self.rule_fixed} rule only")

    @staticmethod
    def to_fla(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).contiguous()


@register("external.fla_linear", family="linear")
class FlaLinear(_FlaAdapter):
    """fla-core chunk_linear_attn with ELU+1 features (sum rule, attention normalisation)."""

    def compute(self, q, k, v, *, causal: bool, beta: torch.Tensor | None) -> torch.Tensor:
        from fla.ops.linear_attn import chunk_linear_attn

        if self.norm == "sum":
            raise Unsupported("fla's linear attention normalises by attention (norm=attn) or not at all")
        phi_q, phi_k = self.features(q, k)
        out, _ = chunk_linear_attn(
            self.to_fla(phi_q), self.to_fla(phi_k), self.to_fla(v), scale=1.0, normalize=self.norm == "attn"
        )
        return out.transpose(1, 2)


@register("external.fla_delta", family="linear")
class FlaDelta(_FlaAdapter):
    """fla-core chunk_delta_rule with ELU+1 features, sum-normalised, and our learned β."""

    params: ClassVar[dict[str, Any]] = {**LinearElu.params, "rule": "delta", "norm": "sum"}
    rule_fixed: ClassVar[str] = "delta"

    def compute(self, q, k, v, *, causal: bool, beta: torch.Tensor | None) -> torch.Tensor:
        from fla.ops.delta_rule import chunk_delta_rule

        if self.norm == "attn":
            raise Unsupported("fla's delta rule has no attention normalisation")
        phi_q, phi_k = self.features(q, k)
        out, _ = chunk_delta_rule(
            self.to_fla(phi_q),
            self.to_fla(phi_k),
            self.to_fla(v),
            self.beta_for(k, beta).transpose(1, 2).contiguous(),
            scale=1.0,
        )
        return out.transpose(1, 2)

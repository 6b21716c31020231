"""linformer: keys and values projected along the sequence to k rows by learned E, F
(Wang et al. 2020), so attention costs O(N·k·D). The projections are sized for a fixed
maximum length; shorter inputs use their first N columns, longer ones are unsupported."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from attnbench.cases import Case, Shape
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants.lowrank.common import LowRankAttention


@register("lowrank.linformer")
class Linformer(LowRankAttention):
    """Linformer: softmax(Q (E K)ᵀ/√d) (F V), learned E, F of k × max_len; non-causal."""

    params: ClassVar[Mapping[str, Any]] = {"k": 256, "max_len": 4096}
    param_minimum: ClassVar[Mapping[str, int]] = {"k": 1, "max_len": 1}
    flops_formula: ClassVar[str] = "8·B·H·N·k·D (E K, F V, Q K'ᵀ, P V'); fwd+bwd 3×"

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        k, max_len = int(self.hparams["k"]), int(self.hparams["max_len"])
        self.e = nn.Parameter(torch.randn(k, max_len) / math.sqrt(k))
        self.f = nn.Parameter(torch.randn(k, max_len) / math.sqrt(k))

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        k = int({**cls.params, **params}["k"])
        fwd = 8 * shape.batch * shape.heads * shape.seq_len * k * shape.d_head
        return fwd if mode == "fwd" else 3 * fwd

    def check(self, case: Case) -> None:
        super().check(case)
        if case.seq_len > int(self.hparams["max_len"]):
            raise Unsupported(f"Linformer's projections end at max_len={self.hparams['max_len']}")

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        if causal:
            raise Unsupported("Linformer mixes the whole sequence into each projected row: no causal form")
        n = k.shape[-2]
        e, f = self.e[:, :n].to(k.dtype), self.f[:, :n].to(v.dtype)
        k_low, v_low = e @ k, f @ v  # (B, H, k, D)
        return torch.softmax(q @ k_low.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v_low

"""What every sparse variant shares: its pattern of allowed (query, key) pairs, the masked
float64 oracle, the FLOP count of the allowed pairs and the density it declares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from attnbench.cases import Shape
from attnbench.registry import Variant


class SparseAttention(Variant):
    family: ClassVar[str] = "sparse"
    reference: ClassVar[str] = "masked_softmax"
    flops_formula: ClassVar[str] = "4·B·H·D per allowed (query, key) pair; fwd+bwd 3×"

    @classmethod
    def allowed(cls, params: Mapping[str, Any], *, n: int, device: str | torch.device = "cpu"):
        """The pattern at length n: (query positions [:, None], key positions [None, :]) ->
        bool; elementwise tensor ops only, so FlexAttention can trace it as a mask_mod."""
        raise NotImplementedError

    @classmethod
    def pairs(cls, seq_len: int, *, causal: bool, params: Mapping[str, Any]) -> int:
        """Allowed (query, key) pairs at this length, counted row by row (O(N) memory)."""
        allowed = cls.allowed({**cls.params, **params}, n=seq_len)
        keys = torch.arange(seq_len)
        total = 0
        for start in range(0, seq_len, 1024):
            rows = torch.arange(start, min(start + 1024, seq_len))
            ok = allowed(rows[:, None], keys[None, :])
            if causal:
                ok &= keys[None, :] <= rows[:, None]
            total += int(ok.sum())
        return total

    @classmethod
    def density(cls, seq_len: int, *, causal: bool, params: Mapping[str, Any]) -> float:
        """Allowed pairs over the pairs of full (causal: lower-triangular) attention."""
        full = seq_len * (seq_len + 1) // 2 if causal else seq_len * seq_len
        return cls.pairs(seq_len, causal=causal, params=params) / full

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        fwd = (
            4
            * shape.batch
            * shape.heads
            * shape.d_head
            * cls.pairs(shape.seq_len, causal=causal, params=params)
        )
        return fwd if mode == "fwd" else 3 * fwd

    def oracle_kwargs(self) -> dict[str, Any]:
        # the oracle passes every key position, so the length is the keys' extent
        return {"allowed": lambda i, j: self.allowed(self.hparams, n=j.shape[-1], device=j.device)(i, j)}

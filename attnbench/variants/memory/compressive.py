"""memory.compressive: Compressive Transformer attention (Rae et al. 2020), segment by segment.

Like `memory.xl`, each segment reads itself causally and the keys and values of the `memory`
tokens before it; tokens older than that are not dropped but compressed at rate c (mean
pooling of c consecutive keys and values, one of the paper's compression functions) into up
to `compressed` slots, which the segment reads too. Memory per segment:
(memory + compressed) keys instead of everything before it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from attnbench.cases import Shape
from attnbench.errors import Unsupported
from attnbench.registry import Variant, register


def compressed_slots(x: torch.Tensor, start: int, *, memory: int, compressed: int, rate: int) -> torch.Tensor:
    """Mean-pooled slots of the tokens before `start − memory`: the most recent `compressed`
    groups of `rate` tokens, oldest first; (B, H, slots, D)."""
    end = max(0, start - memory)
    groups = min(compressed, end // rate)
    if groups == 0:
        return x[:, :, :0]
    old = x[:, :, end - groups * rate : end]
    return old.unflatten(2, (groups, rate)).mean(3)


@register("memory.compressive")
class CompressiveMemory(Variant):
    """Compressive Transformer: a `memory` cache plus mean-pooled older tokens (rate c)."""

    family: ClassVar[str] = "memory"
    reference: ClassVar[str] = "compressive"
    causal_modes: ClassVar[tuple[bool, ...]] = (True,)
    params: ClassVar[Mapping[str, Any]] = {"segment": 256, "memory": 256, "compressed": 64, "rate": 4}
    param_minimum: ClassVar[Mapping[str, int]] = {"segment": 1, "memory": 0, "compressed": 0, "rate": 1}
    flops_formula: ClassVar[str] = "4·D per (query, key or slot) read; fwd+bwd 3×"

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        p = {k: int(v) for k, v in self.hparams.items()}
        self.segment, self.memory, self.compressed, self.rate = (
            p["segment"],
            p["memory"],
            p["compressed"],
            p["rate"],
        )

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        p = {k: int(v) for k, v in {**cls.params, **params}.items()}
        reads = 0
        for start in range(0, shape.seq_len, p["segment"]):
            length = min(p["segment"], shape.seq_len - start)
            end = max(0, start - p["memory"])
            slots = min(p["compressed"], end // p["rate"])
            reads += length * (start - end + slots) + length * (length + 1) // 2
        fwd = 4 * shape.batch * shape.heads * shape.d_head * reads
        return fwd if mode == "fwd" else 3 * fwd

    def cache_bytes(self, shape: Shape, itemsize: int) -> int:
        """The K/V cache and the compressed K/V slots one layer carries between segments."""
        return 2 * shape.batch * shape.heads * (self.memory + self.compressed) * shape.d_head * itemsize

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        if not causal:
            raise Unsupported("the Compressive Transformer reads its past: it has a causal form only")
        n, scale = q.shape[-2], 1.0 / math.sqrt(q.shape[-1])
        outs = []
        for start in range(0, n, self.segment):
            stop = min(start + self.segment, n)
            first = max(0, start - self.memory)
            kc = compressed_slots(k, start, memory=self.memory, compressed=self.compressed, rate=self.rate)
            vc = compressed_slots(v, start, memory=self.memory, compressed=self.compressed, rate=self.rate)
            keys = torch.cat([kc, k[:, :, first:stop]], dim=2)
            values = torch.cat([vc, v[:, :, first:stop]], dim=2)
            scores = q[:, :, start:stop] @ keys.transpose(-1, -2) * scale
            i = torch.arange(start, stop, device=q.device)[:, None]
            j = torch.arange(first, stop, device=q.device)[None, :]
            future = torch.cat(
                [torch.zeros(stop - start, kc.shape[2], dtype=torch.bool, device=q.device), j > i], 1
            )
            outs.append(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ values)
        return torch.cat(outs, dim=2)

    def oracle_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("segment", "memory", "compressed", "rate")}

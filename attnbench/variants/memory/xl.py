"""memory.xl: Transformer-XL attention (Dai et al. 2019), segment by segment.

The input is cut into segments of `segment` tokens; each reads itself causally and the cached
keys and values of the `memory` tokens before it. Positions are Transformer-XL's relative
encoding: score(i, j) = ((q_i + u)·k_j + (q_i + v)·W_R r(i − j)) / √d, with r the sinusoid of
the distance and u, v, W_R learned. Each segment holds only (segment × (memory + segment))
scores. The cache is not detached here (the whole input is one graph), so fwd+bwd also
differentiates through the cached keys and values, which Transformer-XL's training skips."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from attnbench.cases import Shape
from attnbench.errors import Unsupported
from attnbench.positions import sinusoidal
from attnbench.registry import Variant, register
from attnbench.variants.decode_state import KVCache


@dataclass
class XLState:
    """Keys and values of tokens `first` … `position` − 1 (the memory and the current segment),
    in a buffer of segment + memory tokens."""

    cache: KVCache
    first: int
    position: int
    rel: torch.Tensor  # W_R r(δ) for every distance a query reads (H, segment + memory, D)

    @property
    def nbytes(self) -> int:
        """The cached keys and values (the position table is the layer's, not per sequence)."""
        return self.cache.nbytes

    @property
    def allocated(self) -> int:
        return self.cache.allocated


@register("memory.xl")
class TransformerXL(Variant):
    """Transformer-XL: segments of `segment` tokens reading a `memory` cache, relative positions."""

    family: ClassVar[str] = "memory"
    reference: ClassVar[str] = "masked_softmax"
    causal_modes: ClassVar[tuple[bool, ...]] = (True,)
    decode_state: ClassVar[str] = "segments"
    params: ClassVar[Mapping[str, Any]] = {"segment": 256, "memory": 256}
    param_minimum: ClassVar[Mapping[str, int]] = {"segment": 1, "memory": 0}
    flops_formula: ClassVar[str] = (
        "per query 4·D·(keys read) + 2·D·(keys read) for the position term; fwd+bwd 3×"
    )

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        self.segment, self.memory = int(self.hparams["segment"]), int(self.hparams["memory"])
        self.u = nn.Parameter(torch.randn(heads, d_head) * 0.02)
        self.v = nn.Parameter(torch.randn(heads, d_head) * 0.02)
        self.w_r = nn.Parameter(torch.randn(heads, d_head, d_head) * d_head**-0.5)

    @classmethod
    def keys_read(cls, seq_len: int, params: Mapping[str, Any]) -> int:
        p = {**cls.params, **params}
        seg, mem = int(p["segment"]), int(p["memory"])
        i = torch.arange(seq_len)
        start = (i // seg) * seg
        return int((i - (start - mem).clamp(min=0) + 1).sum())

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        fwd = 6 * shape.batch * shape.heads * shape.d_head * cls.keys_read(shape.seq_len, params)
        return fwd if mode == "fwd" else 3 * fwd

    def cache_bytes(self, shape: Shape, itemsize: int) -> int:
        """The K/V cache one layer carries between segments."""
        return 2 * shape.batch * shape.heads * min(self.memory, shape.seq_len) * shape.d_head * itemsize

    def relative(self, dtype: torch.dtype, device, span: int) -> torch.Tensor:
        """W_R r(δ) for distances δ = 0 … span − 1: (H, span, D)."""
        r = sinusoidal(span, self.d_head).to(device=device, dtype=dtype)
        return torch.einsum("sd,hde->hse", r, self.w_r.to(dtype))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        if not causal:
            raise Unsupported("Transformer-XL reads its past: it has a causal form only")
        n, d = q.shape[-2], q.shape[-1]
        scale = 1.0 / math.sqrt(d)
        rel = self.relative(q.dtype, q.device, self.segment + self.memory)
        u, vb = self.u.to(q.dtype)[:, None, :], self.v.to(q.dtype)[:, None, :]
        outs = []
        for start in range(0, n, self.segment):
            stop = min(start + self.segment, n)
            first = max(0, start - self.memory)  # the cache: the memory tokens before this segment
            qs, ks, vs = q[:, :, start:stop], k[:, :, first:stop], v[:, :, first:stop]
            i = torch.arange(start, stop, device=q.device)[:, None]
            j = torch.arange(first, stop, device=q.device)[None, :]
            content = (qs + u) @ ks.transpose(-1, -2)
            dist = (i - j).clamp(min=0)  # (L, M + L)
            position = ((qs + vb) @ rel.transpose(-1, -2)).gather(-1, dist.expand(*qs.shape[:-1], -1))
            scores = ((content + position) * scale).masked_fill(j > i, float("-inf"))
            outs.append(torch.softmax(scores, dim=-1) @ vs)
        return torch.cat(outs, dim=2)

    # --- decoding: the current segment and the memory before it -------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> XLState:
        span = self.segment + self.memory
        cache = KVCache(batch, self.heads, self.d_head, device=device, dtype=dtype, capacity=span)
        return XLState(cache, first=0, position=0, rel=self.relative(dtype, device, span))

    def step(self, state: XLState, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Token n reads keys max(0, segment start − memory) … n, as in `forward`."""
        n = state.position
        first = max(0, (n // self.segment) * self.segment - self.memory)
        state.cache.drop_front(first - state.first)  # a new segment began: forget what left the memory
        state.cache.append(k[:, :, None], v[:, :, None])
        state.first, state.position = first, n + 1
        keys, values = state.cache.keys(), state.cache.values()
        content = ((q + self.u.to(q.dtype)).unsqueeze(-2) @ keys.transpose(-1, -2)).squeeze(-2)
        by_distance = torch.einsum("bhd,hsd->bhs", q + self.v.to(q.dtype), state.rel)  # (B, H, span)
        position = by_distance[..., : n - first + 1].flip(-1)  # distances n − j for j = first … n
        weights = torch.softmax((content + position) / math.sqrt(self.d_head), dim=-1)
        return (weights.unsqueeze(-2) @ values).squeeze(-2), state

    def allowed(self):
        seg, mem = self.segment, self.memory
        return lambda i, j: (j >= (i // seg) * seg - mem) & (j <= i)

    def oracle_kwargs(self) -> dict[str, Any]:
        """The oracle: softmax over the same keys, with the relative terms as a float64 bias."""
        u = self.u.detach().double()[:, None, :]
        vb = self.v.detach().double()[:, None, :]
        w_r = self.w_r.detach().double()
        d = self.d_head

        def prepare(q64: torch.Tensor, k64: torch.Tensor):
            n = k64.shape[-2]
            rel = torch.einsum("sd,hde->hse", sinusoidal(n, d).to(w_r), w_r)  # (H, n, D)

            def bias_of(rows: torch.Tensor) -> torch.Tensor:
                qr = q64[..., rows, :]
                dist = (rows[:, None] - torch.arange(n, device=rows.device)[None, :]).clamp(min=0)
                position = ((qr + vb) @ rel.transpose(-1, -2)).gather(-1, dist.expand(*qr.shape[:-1], -1))
                return ((u @ k64.transpose(-1, -2)) + position) / math.sqrt(d)

            return q64, k64, bias_of

        return {"allowed": self.allowed(), "prepare": prepare}

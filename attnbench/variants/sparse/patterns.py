"""The sparse patterns: which keys each query may read. Each is a class with its parameters
and `allowed`; the paths that compute a pattern (blocked PyTorch, FlexAttention block mask,
dense-mask SDPA) are mixed in by the registered variants."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from attnbench.variants.decode_state import RingCache
from attnbench.variants.sparse.common import SparseAttention


class LocalWindow(SparseAttention):
    """Sliding window of `window` keys: causal j ∈ (i − w, i]; non-causal |i − j| < w."""

    params: ClassVar[Mapping[str, Any]] = {"window": 256}
    param_minimum: ClassVar[Mapping[str, int]] = {"window": 1}
    decode_state: ClassVar[str] = "window"

    @classmethod
    def allowed(cls, params: Mapping[str, Any], *, n: int, device: str | torch.device = "cpu"):
        w = int(params["window"])
        return lambda i, j: (i - j).abs() < w

    # --- decoding: the last w keys in a ring buffer (every local path decodes the same way) ---
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> RingCache:
        return RingCache(
            batch, self.heads, self.d_head, int(self.hparams["window"]), device=device, dtype=dtype
        )

    def step(self, state: RingCache, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        state.append(k[:, :, None], v[:, :, None])
        scores = (q[:, :, None] @ state.keys().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        return (torch.softmax(scores, dim=-1) @ state.values())[:, :, 0], state

    @classmethod
    def pairs(cls, seq_len: int, *, causal: bool, params: Mapping[str, Any]) -> int:
        w, n = int({**cls.params, **params}["window"]), seq_len
        i = torch.arange(n)
        left = i.clamp(max=w - 1)  # keys before i inside the window
        right = (n - 1 - i).clamp(max=w - 1)
        return int((left + 1).sum()) if causal else int((left + right + 1).sum())


class Strided(SparseAttention):
    """Sparse Transformer's strided pattern (Child et al. 2019) in one head: a local window of
    `window` keys plus every `stride`-th key, (i − j) mod s = 0."""

    params: ClassVar[Mapping[str, Any]] = {"window": 128, "stride": 128}
    param_minimum: ClassVar[Mapping[str, int]] = {"window": 1, "stride": 1}

    @classmethod
    def allowed(cls, params: Mapping[str, Any], *, n: int, device: str | torch.device = "cpu"):
        w, s = int(params["window"]), int(params["stride"])
        return lambda i, j: ((i - j).abs() < w) | ((i - j) % s == 0)


class Star(SparseAttention):
    """Star-Transformer (Guo et al. 2019): a relay token (position 0) reads and is read by all;
    every other token reads its `neighbours` on each side and the relay."""

    params: ClassVar[Mapping[str, Any]] = {"neighbours": 1}
    param_minimum: ClassVar[Mapping[str, int]] = {"neighbours": 0}

    @classmethod
    def allowed(cls, params: Mapping[str, Any], *, n: int, device: str | torch.device = "cpu"):
        r = int(params["neighbours"])
        return lambda i, j: (i == 0) | (j == 0) | ((i - j).abs() <= r)


class BigBird(SparseAttention):
    """Global + local + random (Longformer/BigBird, Zaheer et al. 2020): the first `global_`
    tokens read and are read by all, a window of `window` keys, and for each query block of
    `block` tokens `random` key blocks drawn once from a fixed `seed` (causal masking then
    drops the drawn blocks in the future)."""

    params: ClassVar[Mapping[str, Any]] = {"global_": 2, "window": 128, "random": 2, "block": 64, "seed": 0}
    param_minimum: ClassVar[Mapping[str, int]] = {
        "global_": 0,
        "window": 1,
        "random": 0,
        "block": 1,
        "seed": 0,
    }

    @classmethod
    def random_blocks(cls, params: Mapping[str, Any], n: int) -> torch.Tensor:
        """(blocks, blocks) bool: query block a reads key block b at random."""
        bs, r = int(params["block"]), int(params["random"])
        blocks = -(-n // bs)
        gen = torch.Generator().manual_seed(int(params["seed"]))
        table = torch.zeros(blocks, blocks, dtype=torch.bool)
        for a in range(blocks):
            table[a, torch.randperm(blocks, generator=gen)[: min(r, blocks)]] = True
        return table

    @classmethod
    def allowed(cls, params: Mapping[str, Any], *, n: int, device: str | torch.device = "cpu"):
        g, w, bs = int(params["global_"]), int(params["window"]), int(params["block"])
        table = cls.random_blocks(params, n).to(device)
        return lambda i, j: (i < g) | (j < g) | ((i - j).abs() < w) | table[i // bs, j // bs]

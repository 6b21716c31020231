"""What a variant carries from one decoding step to the next, and its exact size.

Softmax attention keeps every key and value it has seen (`KVCache`, growing by doubling its
buffers so an append is amortised O(1)); a sliding window keeps the last w (`RingCache`);
linear attention keeps a fixed-size fast-weight state (a tuple of tensors). `state_bytes` is
the bytes the state holds (the filled part of a cache), `allocated_bytes` what its buffers
occupy: both exact, on any device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._pytree import tree_leaves


class KVCache:
    """Keys and values (B, H, length, D) of every token so far."""

    def __init__(
        self, batch: int, heads: int, d_head: int, *, device, dtype: torch.dtype, capacity: int = 256
    ) -> None:
        shape = (batch, heads, capacity, d_head)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add (B, H, t, D) keys and values at the end."""
        need = self.length + k.shape[2]
        if need > self.k.shape[2]:
            self._grow(max(need, 2 * self.k.shape[2]))
        self.k[:, :, self.length : need] = k
        self.v[:, :, self.length : need] = v
        self.length = need

    def drop_front(self, count: int) -> None:
        """Forget the oldest `count` tokens (a segment memory moving on): one copy."""
        if count <= 0:
            return
        kept = self.length - count
        for buffer in (self.k, self.v):
            buffer[:, :, :kept] = buffer[:, :, count : self.length].clone()
        self.length = kept

    def _grow(self, capacity: int) -> None:
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty(*old.shape[:2], capacity, old.shape[3])
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def keys(self) -> torch.Tensor:
        return self.k[:, :, : self.length]

    def values(self) -> torch.Tensor:
        return self.v[:, :, : self.length]

    @property
    def nbytes(self) -> int:
        b, h, _, d = self.k.shape
        return 2 * b * h * self.length * d * self.k.element_size()

    @property
    def allocated(self) -> int:
        return self.k.nbytes + self.v.nbytes


class RingCache:
    """The last `window` keys and values, overwritten in place: slot t mod w holds token t."""

    def __init__(
        self, batch: int, heads: int, d_head: int, window: int, *, device, dtype: torch.dtype
    ) -> None:
        shape = (batch, heads, window, d_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.window, self.seen = window, 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add one token's (B, H, 1, D) key and value."""
        slot = self.seen % self.window
        self.k[:, :, slot : slot + 1] = k
        self.v[:, :, slot : slot + 1] = v
        self.seen += 1

    def keys(self) -> torch.Tensor:
        return self.k[:, :, : min(self.seen, self.window)]

    def values(self) -> torch.Tensor:
        return self.v[:, :, : min(self.seen, self.window)]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def allocated(self) -> int:
        return self.nbytes


def state_bytes(state: Any) -> int:
    """Bytes the state holds: a cache's filled part, or every tensor of a fixed-size state."""
    if hasattr(state, "nbytes") and not isinstance(state, torch.Tensor):
        return int(state.nbytes)
    return sum(t.nbytes for t in tree_leaves(state) if isinstance(t, torch.Tensor))


def allocated_bytes(state: Any) -> int:
    """Bytes the state's buffers occupy (a cache's spare capacity included)."""
    if hasattr(state, "allocated"):
        return int(state.allocated)
    return state_bytes(state)

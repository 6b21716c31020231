"""Inputs for a case: seeded random q, k, v (and the output gradient for fwd+bwd)."""

from __future__ import annotations

import torch

from attnbench.cases import Case, Shape


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def case_seed(case: Case) -> int:
    return int(case.id[:8], 16)


def randn(shape: tuple[int, ...], *, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """Standard normal values drawn on the CPU (same values on every device), then moved."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def make_qkv(shape: Shape, *, dtype: torch.dtype, device: str, seed: int) -> tuple[torch.Tensor, ...]:
    dims = (shape.batch, shape.heads, shape.seq_len, shape.d_head)
    return tuple(randn(dims, dtype=dtype, device=device, seed=seed + i) for i in range(3))

"""Positional schemes as composable parts, each declaring how it applies:

- `embedding`: added to token embeddings before the layer (sinusoidal; learned absolute, with
  a fixed table so positions past `max_len` are `Unsupported`);
- `rotation`: q and k rotated by position (RoPE, Su et al. 2021);
- `bias`: a term added to the attention scores (Shaw et al. 2018 relative, clipped at ±R;
  T5's log-bucketed learned bias; ALiBi, Press et al. 2021). A bias runs through the naive path
  (`bias` tensor), SDPA (`attn_mask` as a float tensor) and FlexAttention (`score_mod`).

Bias schemes need a path that takes a score term: kernels without one (the linear family,
fused kernels without masks) record the pairing `unsupported` via `check_pairing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from attnbench.errors import Unsupported, UserError


@dataclass(frozen=True)
class Scheme:
    name: str
    applies: str  # "none" | "embedding" | "rotation" | "bias"
    description: str
    bounded: bool = False  # a fixed table of positions (learned absolute)


SCHEMES = {
    s.name: s
    for s in (
        Scheme("none", "none", "no position information"),
        Scheme("sinusoidal", "embedding", "fixed sinusoids added to the embeddings (Vaswani et al. 2017)"),
        Scheme("learned", "embedding", "a learned table of absolute positions, fixed maximum length", True),
        Scheme("relative", "bias", "learned relative embeddings clipped at ±R, q·a(j−i) (Shaw et al. 2018)"),
        Scheme("t5", "bias", "learned scalar per head and log-spaced distance bucket (Raffel et al. 2020)"),
        Scheme("rope", "rotation", "q, k rotated by position-dependent angles (Su et al. 2021)"),
        Scheme("alibi", "bias", "−m_h·(i − j), slopes a geometric sequence over heads (Press et al. 2021)"),
    )
}


def check_pairing(scheme: str, *, family: str, takes_bias: bool) -> None:
    """Raise Unsupported for a scheme a variant cannot apply (recorded, not crashed)."""
    if scheme not in SCHEMES:
        raise UserError(f"unknown positional scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    if SCHEMES[scheme].applies == "bias" and not takes_bias:
        raise Unsupported(f"{scheme} adds a score bias; this {family} path has no score term to add it to")


# --- embeddings ---------------------------------------------------------------------------------
def sinusoidal(n: int, d_model: int, *, start: int = 0, base: float = 10000.0) -> torch.Tensor:
    """(n, d_model) for positions start … start + n − 1: sin on even, cos on odd channels,
    wavelengths geometric from 2π to base·2π. (Decoding asks for one row at a time.)"""
    pos = torch.arange(start, start + n, dtype=torch.float64)[:, None]
    freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table.float()


class LearnedAbsolute(nn.Module):
    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def check(self, n: int) -> None:
        if n > self.max_len:
            raise Unsupported(f"learned positions end at {self.max_len}; cannot embed {n}")

    def forward(self, n: int) -> torch.Tensor:
        self.check(n)
        return self.table[:n]


# --- rotation -----------------------------------------------------------------------------------
def rope(x: torch.Tensor, positions: torch.Tensor | None = None, *, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs (2k, 2k+1) of x (..., N, D) by angle position·base^(−2k/D)."""
    n, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(n, device=x.device) if positions is None else positions
    theta = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float64) / d)
    angle = pos.to(torch.float64)[:, None] * theta  # (N, D/2)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


# --- biases -------------------------------------------------------------------------------------
def alibi_slopes(heads: int) -> torch.Tensor:
    """The paper's slopes: for 2^k heads, 2^(−8/2^k · h) for h = 1 … 2^k (8 heads: 1/2 … 1/256);
    otherwise those of the power of two below, then every other slope of the one above."""

    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return torch.tensor(power_of_two(heads))
    below = 2 ** math.floor(math.log2(heads))
    extra = alibi_slopes(2 * below)[0::2][: heads - below]
    return torch.cat([torch.tensor(power_of_two(below)), extra])


def query_positions(n_q: int, n_k: int, q_pos: torch.Tensor | None, device=None) -> torch.Tensor:
    """Positions of the queries: given, or the last n_q of the n_k keys (a column vector)."""
    pos = torch.arange(n_k - n_q, n_k, device=device) if q_pos is None else q_pos.to(device)
    return pos[:, None]


def alibi_bias(
    heads: int, n_q: int, n_k: int, *, device=None, q_pos: torch.Tensor | None = None
) -> torch.Tensor:
    """(H, n_q, n_k): −m_h·|i − j| (causal masking removes j > i; the paper's form is −m·(i − j))."""
    i = query_positions(n_q, n_k, q_pos, device)
    j = torch.arange(n_k, device=device)[None, :]
    return -alibi_slopes(heads).to(device)[:, None, None] * (i - j).abs()


def t5_bucket(relative: torch.Tensor, *, bidirectional: bool, buckets: int = 32, max_distance: int = 128):
    """T5's bucket of relative position j − i: exact for small distances, log-spaced up to
    `max_distance`, one bucket beyond; with `bidirectional` half the buckets for j > i."""
    n = -relative
    ret = torch.zeros_like(n)
    if bidirectional:
        buckets //= 2
        ret = ret + (n < 0).long() * buckets
        n = n.abs()
    else:
        n = n.clamp(min=0)
    exact = buckets // 2
    large = (
        exact
        + (
            torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (buckets - exact)
        ).long()
    )
    return ret + torch.where(n < exact, n, large.clamp(max=buckets - 1))


class T5Bias(nn.Module):
    def __init__(
        self, heads: int, *, buckets: int = 32, max_distance: int = 128, bidirectional: bool = False
    ):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.table = nn.Parameter(torch.randn(buckets, heads) * 0.1)

    def forward(self, n_q: int, n_k: int, q_pos: torch.Tensor | None = None) -> torch.Tensor:
        i = query_positions(n_q, n_k, q_pos, self.table.device)
        j = torch.arange(n_k, device=self.table.device)[None, :]
        b = t5_bucket(
            j - i, bidirectional=self.bidirectional, buckets=self.buckets, max_distance=self.max_distance
        )
        return self.table[b].permute(2, 0, 1)  # (H, n_q, n_k)


class ShawRelative(nn.Module):
    """Learned key-side relative embeddings a(clip(j − i, −R, R)); the score term is q_i·a(j − i)."""

    def __init__(self, d_head: int, max_distance: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(torch.randn(2 * max_distance + 1, d_head) * d_head**-0.5)

    def forward(self, q: torch.Tensor, n_k: int, q_pos: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, n_q, n_k) bias from q (B, H, n_q, D)."""
        n_q = q.shape[-2]
        i = query_positions(n_q, n_k, q_pos, q.device)
        j = torch.arange(n_k, device=q.device)[None, :]
        idx = (j - i).clamp(-self.max_distance, self.max_distance) + self.max_distance
        qa = q @ self.table.to(q.dtype).T  # (B, H, n_q, 2R + 1)
        return qa.gather(-1, idx.expand(*q.shape[:-2], n_q, n_k))


def alibi_score_mod(heads: int, device=None):
    """FlexAttention score_mod adding ALiBi's bias (no table: the slope times the distance)."""
    slopes = alibi_slopes(heads).to(device)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx).abs()

    return score_mod


def table_score_mod(bias: torch.Tensor):
    """FlexAttention score_mod adding a precomputed (H, N, N) or (B, H, N, N) bias."""
    if bias.dim() == 3:
        return lambda score, b, h, q_idx, kv_idx: score + bias[h, q_idx, kv_idx]
    return lambda score, b, h, q_idx, kv_idx: score + bias[b, h, q_idx, kv_idx]

"""The three forms of linear attention over features φ(q), φ(k) (B, H, N, F) and values v
(B, H, N, D). The fast-weight memory is W (B, H, F, D): a query reads q·W, the sum rule writes
W += φ(k)ᵀ v, the delta rule W += β φ(k)ᵀ (v − φ(k)·W). With `normalize`, outputs are divided
by φ(q)·z + EPS where z = Σ φ(k) over the tokens read (attention normalisation).

- `parallel`: the masked quadratic form, O(N²) memory; the readable one.
- the chunked form, O(N·C·(F + D) + N·F·D) work and no N×N tensor, streamed block by block
  with its own backward: `chunked.py`.
- `init_state` / `step`: one token at a time, the RNN view used for decoding.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def sum_normalised(phi: torch.Tensor) -> torch.Tensor:
    """Sum normalisation of features: φ divided by the sum of its components (+ EPS)."""
    return phi / (phi.sum(-1, keepdim=True) + EPS)


def sum_normalised_(phi: torch.Tensor) -> torch.Tensor:
    """`sum_normalised` in place (no autograd)."""
    return phi.div_(phi.sum(-1, keepdim=True).add_(EPS))


def _normalised(out: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return out / (den.unsqueeze(-1) + EPS)


def global_sum(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """Non-causal sum rule: every query reads the memory of the whole sequence."""
    out = q @ (k.transpose(-1, -2) @ v)
    return _normalised(out, (q @ k.sum(2).unsqueeze(-1)).squeeze(-1)) if normalize else out


def parallel(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool,
    beta: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal masked quadratic form: O = tril(φQ φKᵀ) U, with U = V for the sum rule and,
    for the delta rule, U = (I + tril(diag(β) K Kᵀ, −1))⁻¹ diag(β) V (the UT transform of
    the whole sequence as one chunk)."""
    scores = (q @ k.transpose(-1, -2)).tril()
    u = v if beta is None else ut_transform(k, v, beta)[1][..., : v.shape[-1]]
    out = scores @ u
    return _normalised(out, scores.sum(-1)) if normalize else out


def ut_transform(k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chunk, the WY/UT representation of the delta rule's C sequential writes: with
    A = tril(diag(β) K Kᵀ, −1), [U, W] = (I + A)⁻¹ diag(β) [V, K], and the chunk writes
    Kᵀ (U − W S) into a memory S it found on entry. Inputs are chunked (…, C, X); returns A
    and [U, W] (…, C, D + F)."""
    kb = beta.unsqueeze(-1) * k
    a = (kb @ k.transpose(-1, -2)).tril_(-1)  # the unit diagonal of I + A is implied
    rhs = torch.cat([beta.unsqueeze(-1) * v, kb], dim=-1)
    return a, torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)


def init_state(
    batch: int, heads: int, d_dot: int, d_value: int, *, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty memory W (B, H, F, D) and key sum z (B, H, F)."""
    return (
        torch.zeros(batch, heads, d_dot, d_value, device=device, dtype=dtype),
        torch.zeros(batch, heads, d_dot, device=device, dtype=dtype),
    )


def step(
    state: tuple[torch.Tensor, torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    normalize: bool,
    beta: torch.Tensor | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One token: q, k features (B, H, F), v (B, H, D), beta (B, H) for the delta rule.
    Writes first, then reads, so a token sees itself (as the causal forms do)."""
    memory, z = state
    if beta is None:
        memory = memory + k.unsqueeze(-1) * v.unsqueeze(-2)
    else:
        retrieved = (k.unsqueeze(-2) @ memory).squeeze(-2)
        memory = memory + k.unsqueeze(-1) * (beta.unsqueeze(-1) * (v - retrieved)).unsqueeze(-2)
    out = (q.unsqueeze(-2) @ memory).squeeze(-2)
    if normalize:
        z = z + k
        out = out / ((q * z).sum(-1, keepdim=True) + EPS)
    return out, (memory, z)

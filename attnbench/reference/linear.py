"""Linear attention / fast-weight memory in float64, token by token: the oracle of every
`linear.*` variant. The sum rule's causal output is computed in the masked quadratic form
(it equals the scan exactly and allows a row subset); the delta rule is the sequential scan
itself, checkpointed in segments so its gradients fit in memory at long N."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

EPS = 1e-6  # the denominators' guard, as in the fast forms


def _features(x: torch.Tensor, feature_map: Callable, norm: str) -> torch.Tensor:
    phi = feature_map(x)
    return phi / (phi.sum(-1, keepdim=True) + EPS) if norm == "sum" else phi


def _delta_scan(
    memory: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """W ← W + β φ(k)ᵀ (v − φ(k)·W), then read φ(q)·W, one token at a time."""
    outs = []
    for t in range(q.shape[2]):
        kt = k[:, :, t]
        retrieved = torch.einsum("bhf,bhfd->bhd", kt, memory)
        write = beta[:, :, t, None] * (v[:, :, t] - retrieved)
        memory = memory + torch.einsum("bhf,bhd->bhfd", kt, write)
        outs.append(torch.einsum("bhf,bhfd->bhd", q[:, :, t], memory))
    return torch.stack(outs, 2), memory


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    rows: torch.Tensor | None = None,
    feature_map: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
    rule: str = "sum",
    norm: str = "none",
    beta: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
    segment: int = 256,
) -> torch.Tensor:
    """Output of linear attention for queries q, keys k, values v (B, H, N, D), in float64.

    `feature_map` is φ (applied in float64), `norm` one of none | attn | sum, `rule` sum |
    delta; `beta` (B, H, N), or a function of the raw keys giving it, for the delta rule.
    `rows` restricts the returned query rows. Returns (B, H, len(rows) or N, D).
    """
    q, k, v = (t.to(torch.float64) for t in (q, k, v))
    n = q.shape[2]
    rows = torch.arange(n, device=q.device) if rows is None else rows.to(q.device)
    phi_q, phi_k = _features(q[:, :, rows], feature_map, norm), _features(k, feature_map, norm)
    weights = phi_q @ phi_k.transpose(-1, -2)  # (B, H, rows, N): φ(q_t)·φ(k_s)
    if causal:
        weights = weights.masked_fill(torch.arange(n, device=q.device) > rows[:, None], 0.0)
    if rule == "sum":
        out = weights @ v
    elif rule == "delta":
        if not causal:
            raise ValueError("the delta rule is causal only")
        b = (beta(k) if callable(beta) else beta).to(torch.float64)
        phi_q_all = _features(q, feature_map, norm)
        memory = q.new_zeros(q.shape[0], q.shape[1], phi_k.shape[-1], v.shape[-1])
        outs = []
        for s in range(0, n, segment):
            seg = slice(s, s + segment)
            out, memory = checkpoint(
                _delta_scan,
                memory,
                phi_q_all[:, :, seg],
                phi_k[:, :, seg],
                v[:, :, seg],
                b[:, :, seg],
                use_reentrant=False,
            )
            outs.append(out)
        out = torch.cat(outs, 2)[:, :, rows]
    else:
        raise ValueError(f"unknown rule {rule!r}")
    # attention normalisation divides by φ(q_t)·Σ_{s≤t} φ(k_s), whatever the rule
    return out / (weights.sum(-1, keepdim=True) + EPS) if norm == "attn" else out

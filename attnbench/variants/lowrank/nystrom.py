"""nystrom: Nyströmformer (Xiong et al. 2021). m landmarks (segment means of Q and K) and
softmax(Q K̃ᵀ) · pinv(softmax(Q̃ K̃ᵀ)) · softmax(Q̃ Kᵀ) V, the pseudo-inverse by the paper's
iteration (or exactly, `pinv="exact"`). O(N·m·D); with m = N it is exact softmax attention."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from attnbench.cases import Shape
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants.lowrank.common import LowRankAttention


def iterative_pinv(a: torch.Tensor, iters: int) -> torch.Tensor:
    """Z₀ = Aᵀ/(‖A‖₁‖A‖∞), Z ← ¼ Z (13I − AZ (15I − AZ (7I − AZ))) (Razavi et al. 2014)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    norm = a.abs().sum(-2).amax(-1) * a.abs().sum(-1).amax(-1)
    z = a.transpose(-1, -2) / norm[..., None, None]
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def landmarks(x: torch.Tensor, m: int) -> torch.Tensor:
    """Segment means: m contiguous segments of (nearly) equal length."""
    b, h, n, d = x.shape
    return (
        F.adaptive_avg_pool1d(x.reshape(b * h, n, d).transpose(1, 2), m).transpose(1, 2).reshape(b, h, m, d)
    )


@register("lowrank.nystrom")
class Nystromformer(LowRankAttention):
    """Nyströmformer: m segment-mean landmarks, iterative pseudo-inverse; non-causal."""

    params: ClassVar[Mapping[str, Any]] = {"landmarks": 64, "pinv": "iterative", "iters": 6}
    param_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"pinv": ("iterative", "exact")}
    param_minimum: ClassVar[Mapping[str, int]] = {"landmarks": 1, "iters": 0}
    flops_formula: ClassVar[str] = "B·H·(8·N·m·D + 4·m²·D + iters·8·m³); fwd+bwd 3×"

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        p = {**cls.params, **params}
        n, d, m, iters = shape.seq_len, shape.d_head, min(int(p["landmarks"]), shape.seq_len), int(p["iters"])
        fwd = shape.batch * shape.heads * (8 * n * m * d + 4 * m * m * d + iters * 8 * m**3)
        return fwd if mode == "fwd" else 3 * fwd

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        if causal:
            raise Unsupported("Nyströmformer's landmarks average over the sequence: no causal form")
        m = min(int(self.hparams["landmarks"]), q.shape[-2])
        scale = 1.0 / math.sqrt(q.shape[-1])
        q_l, k_l = landmarks(q, m), landmarks(k, m)
        kernel_1 = torch.softmax(q @ k_l.transpose(-1, -2) * scale, dim=-1)  # (B, H, N, m)
        kernel_2 = torch.softmax(q_l @ k_l.transpose(-1, -2) * scale, dim=-1)  # (B, H, m, m)
        kernel_3 = torch.softmax(q_l @ k.transpose(-1, -2) * scale, dim=-1)  # (B, H, m, N)
        if self.hparams["pinv"] == "exact":
            inverse = torch.linalg.pinv(kernel_2)
        else:
            inverse = iterative_pinv(kernel_2, int(self.hparams["iters"]))
        return kernel_1 @ (inverse @ (kernel_3 @ v))

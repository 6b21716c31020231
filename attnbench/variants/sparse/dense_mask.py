"""`sparse.<pattern>_sdpa`: a pattern as a dense N×N boolean mask handed to SDPA, the path a
user gets without a sparse kernel (the comparison the sparse forms must beat)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.sparse.common import SparseAttention
from attnbench.variants.sparse.patterns import BigBird, LocalWindow, Star, Strided


class DenseMaskSDPA(SparseAttention):
    """The pattern's N×N mask through SDPA (all N² scores computed, the masked ones discarded)."""

    description: ClassVar[str] = ""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        pos = torch.arange(q.shape[-2], device=q.device)
        mask = self.allowed(self.hparams, n=q.shape[-2], device=q.device)(pos[:, None], pos[None, :])
        if causal:
            mask &= pos[None, :] <= pos[:, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@register("sparse.local_sdpa")
class LocalDenseMask(DenseMaskSDPA, LocalWindow):
    """Sliding window through SDPA with a dense N×N mask."""


@register("sparse.strided_sdpa")
class StridedDenseMask(DenseMaskSDPA, Strided):
    """Strided pattern (local + every s-th) through SDPA with a dense N×N mask."""


@register("sparse.star_sdpa")
class StarDenseMask(DenseMaskSDPA, Star):
    """Star pattern (relay + neighbours) through SDPA with a dense N×N mask."""


@register("sparse.bigbird_sdpa")
class BigBirdDenseMask(DenseMaskSDPA, BigBird):
    """Global + local + random blocks through SDPA with a dense N×N mask."""

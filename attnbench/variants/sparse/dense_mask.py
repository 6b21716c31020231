"""sparse.local_sdpa: the same window as a dense N×N boolean mask handed to SDPA, the path a
user gets without a sparse kernel (the comparison the sparse forms must beat)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnbench.registry import register
from attnbench.variants.sparse.common import LocalWindow


@register("sparse.local_sdpa")
class LocalDenseMask(LocalWindow):
    """Sliding window through SDPA with a dense N×N mask (all N² scores computed)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        n = q.shape[-2]
        pos = torch.arange(n, device=q.device)
        mask = self.allowed(self.hparams)(pos[:, None], pos[None, :])
        if causal:
            mask &= pos[None, :] <= pos[:, None]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

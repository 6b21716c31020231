"""`sparse.<pattern>_flex`: a pattern as a FlexAttention block mask, compiled (inductor on CPU,
Triton on GPU): blocks with no allowed pair are skipped, so work follows the pattern."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch

from attnbench.cases import Case
from attnbench.registry import register
from attnbench.variants import flex
from attnbench.variants.sparse.common import SparseAttention
from attnbench.variants.sparse.patterns import BigBird, LocalWindow, Star, Strided


@functools.lru_cache(maxsize=64)
def _block_mask(cls: type, params: tuple[tuple[str, Any], ...], n: int, causal: bool, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    allowed = cls.allowed(dict(params), n=n, device=device)

    def mask_mod(b, h, i, j):
        ok = allowed(i, j)
        return ok & (j <= i) if causal else ok

    return create_block_mask(mask_mod, None, None, n, n, device=device)


class FlexBlockMask(SparseAttention):
    """The pattern as a FlexAttention block mask under torch.compile."""

    compiled: ClassVar[bool] = True
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "bfloat16", "float16")

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return flex.unavailable_reason(device)

    def check(self, case: Case) -> None:
        super().check(case)
        flex.check(case)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        params = tuple(sorted(self.hparams.items()))
        mask = _block_mask(type(self), params, q.shape[-2], causal, str(q.device))
        return flex.compiled_flex()(q, k, v, block_mask=mask)


@register("sparse.local_flex")
class LocalFlex(FlexBlockMask, LocalWindow):
    """Sliding window as a FlexAttention block mask."""


@register("sparse.strided_flex")
class StridedFlex(FlexBlockMask, Strided):
    """Strided pattern (local + every s-th) as a FlexAttention block mask."""


@register("sparse.star_flex")
class StarFlex(FlexBlockMask, Star):
    """Star pattern (relay + neighbours) as a FlexAttention block mask."""


@register("sparse.bigbird_flex")
class BigBirdFlex(FlexBlockMask, BigBird):
    """Global + local + random blocks as a FlexAttention block mask."""

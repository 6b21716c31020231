"""sparse.local_flex: the window as a FlexAttention block mask, compiled (inductor on CPU,
Triton on GPU): blocks outside the band are skipped, so work follows the window."""

from __future__ import annotations

import functools

import torch

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants.softmax.flex import FlexSoftmax, _compiled_flex
from attnbench.variants.sparse.common import LocalWindow


@functools.lru_cache(maxsize=32)
def _window_block_mask(n: int, window: int, causal: bool, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, i, j):
        near = (i - j < window) & (j - i < window)
        return near & (j <= i) if causal else near

    return create_block_mask(mask_mod, None, None, n, n, device=device)


@register("sparse.local_flex")
class LocalFlex(LocalWindow):
    """Sliding window as a FlexAttention block mask under torch.compile."""

    compiled = True
    dtypes = ("float32", "bfloat16", "float16")
    unavailable_reason = FlexSoftmax.unavailable_reason

    def check(self, case: Case) -> None:
        super().check(case)
        if case.device == "cpu" and case.mode != "fwd":
            raise Unsupported(f"FlexAttention has no CPU backward in torch {torch.__version__}")

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        mask = _window_block_mask(q.shape[-2], int(self.hparams["window"]), causal, str(q.device))
        return _compiled_flex()(q, k, v, block_mask=mask)

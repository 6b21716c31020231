"""softmax.flex: FlexAttention under torch.compile (inductor on CPU, Triton on GPU).

Uncompiled, flex_attention falls back to an eager path that materialises every score, and
torch.compile falls back to it silently once a function has been recompiled more than
`recompile_limit` times. The variant declares `compiled = True`, so the harness's compile
guard (attnbench.measure.compile_guard) counts compilations, turns a silent fall-back into a
flagged one, and marks such a measurement invalid.
"""

from __future__ import annotations

import functools

import torch

from attnbench import positions
from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants import flex
from attnbench.variants.softmax.common import SoftmaxAttention


@functools.lru_cache(maxsize=64)
def _block_mask(n_q: int, n_k: int, device: str, causal: bool):
    from torch.nn.attention.flex_attention import create_block_mask

    offset = n_k - n_q
    if causal:
        mask_mod = lambda b, h, q, k: q + offset >= k
    else:
        mask_mod = lambda b, h, q, k: q >= 0
    return create_block_mask(mask_mod, None, None, n_q, n_k, device=device)


@register("softmax.flex")
class FlexSoftmax(SoftmaxAttention):
    """FlexAttention compiled with torch.compile; block mask for causal."""

    compiled = True
    dtypes = ("float32", "bfloat16", "float16")

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        return flex.unavailable_reason(device)

    takes_bias = True  # as a score_mod: ALiBi (computed in the kernel, no N×N table)
    bias_as_tensor = False
    decode_state = ""

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype):
        raise Unsupported(
            "FlexAttention compiles for each key length: decoding would recompile at every token "
            "(it needs a static cache and a length mask)"
        )

    def check(self, case: Case) -> None:
        super().check(case)
        flex.check(case)
        if self.position == "relative":
            raise Unsupported("Shaw relative positions need q·a(j − i), which a score_mod cannot see")
        if self.position == "t5":
            raise Unsupported(
                f"T5's distance bucketing fails to compile inside a score_mod (torch {torch.__version__})"
            )

    def score_mod(self, device: torch.device):
        """One function per module and device, so the compiled kernel is reused call after call."""
        cache = self.__dict__.setdefault("_score_mods", {})
        if device not in cache:
            alibi = self.position == "alibi"
            cache[device] = positions.alibi_score_mod(self.heads, device=device) if alibi else None
        return cache[device]

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        block_mask = _block_mask(q.shape[-2], k.shape[-2], str(q.device), causal)
        score_mod = self.score_mod(q.device)
        if score_mod is None:
            return flex.compiled_flex()(q, k, v, block_mask=block_mask)
        return flex.compiled_flex()(q, k, v, score_mod=score_mod, block_mask=block_mask)

"""torch's scaled_dot_product_attention, once with its own dispatch and once pinned to each
backend, so the sweep shows what each kernel does rather than what the dispatcher picked."""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.registry import register
from attnbench.variants.softmax.common import SoftmaxAttention


class _SDPA(SoftmaxAttention):
    backend: ClassVar[SDPBackend | None] = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False):
        if self.backend is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        with sdpa_kernel(self.backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        dtype = "float32" if device == "cpu" else "float16"
        return _probe(cls.backend, device, dtype, 64, False, False)

    def check(self, case: Case) -> None:
        super().check(case)
        reason = _probe(self.backend, case.device, case.dtype, case.d_head, case.causal, case.mode != "fwd")
        if reason:
            raise Unsupported(reason)


@functools.cache
def _probe(
    backend: SDPBackend | None, device: str, dtype: str, d_head: int, causal: bool, grad: bool
) -> str | None:
    """Run a tiny call pinned to `backend`: the only reliable way to know torch can run it here."""
    x = torch.randn(1, 2, 16, d_head, device=device, dtype=getattr(torch, dtype), requires_grad=grad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                out = F.scaled_dot_product_attention(x, x, x, is_causal=causal)
                if grad:
                    out.sum().backward()
        except (RuntimeError, NotImplementedError):
            why = [str(w.message).split("\n")[0] for w in caught if "kernel not used" in str(w.message)]
            name = backend.name.lower().replace("_attention", "") if backend is not None else "default"
            detail = f" ({why[0]})" if why else ""
            return f"torch {torch.__version__} has no {name} SDPA kernel for {device} {dtype}{detail}"
    return None


@register("softmax.sdpa")
class SDPADefault(_SDPA):
    """F.scaled_dot_product_attention with torch's own backend choice."""


@register("softmax.sdpa_math")
class SDPAMath(_SDPA):
    """SDPA pinned to the math backend (composite ops, materialises scores)."""

    backend = SDPBackend.MATH


@register("softmax.sdpa_flash")
class SDPAFlash(_SDPA):
    """SDPA pinned to the FlashAttention backend (CPU flash kernel, or FA2 on CUDA)."""

    backend = SDPBackend.FLASH_ATTENTION


@register("softmax.sdpa_efficient")
class SDPAEfficient(_SDPA):
    """SDPA pinned to the memory-efficient (xformers-derived) backend; CUDA only."""

    backend = SDPBackend.EFFICIENT_ATTENTION


@register("softmax.sdpa_cudnn")
class SDPACudnn(_SDPA):
    """SDPA pinned to the cuDNN backend; CUDA only."""

    backend = SDPBackend.CUDNN_ATTENTION

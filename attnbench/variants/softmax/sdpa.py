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
    takes_bias = True  # as a float attn_mask

    def attend(self, q, k, v, *, causal: bool, bias: torch.Tensor | None) -> torch.Tensor:
        mask = None
        if bias is not None:
            n_q, n_k = q.shape[-2], k.shape[-2]
            mask = bias if bias.dim() == 4 else bias.unsqueeze(0)  # fused kernels take 2-D or 4-D masks
            if causal:
                future = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu_(n_k - n_q + 1)
                mask = mask.masked_fill(future, float("-inf"))
            causal = False
        with sdpa_kernel(self.backend) if self.backend is not None else contextlib.nullcontext():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        dtype = "float32" if device == "cpu" else "float16"
        return _probe(cls.backend, device, dtype, 64, False, False)

    def check(self, case: Case) -> None:
        super().check(case)
        grad = case.mode != "fwd"
        mask = None if self.scheme.applies != "bias" else "learned" if self.position != "alibi" else "fixed"
        reason = _probe(self.backend, case.device, case.dtype, case.d_head, case.causal, grad, mask)
        if reason:
            raise Unsupported(reason)


@functools.cache
def _probe(
    backend: SDPBackend | None,
    device: str,
    dtype: str,
    d_head: int,
    causal: bool,
    grad: bool,
    mask_kind: str | None = None,
) -> str | None:
    """Run a tiny call pinned to `backend`: the only reliable way to know torch can run it here.
    `mask_kind`: a float attn_mask as bias schemes pass it, "fixed" or "learned" (needing a
    gradient in fwd+bwd, which some fused kernels refuse)."""
    # its own generator: drawing from the global one would shift every seeded initialisation
    # that follows the first probe in a process (a model trained then differs from its rerun)
    x = torch.randn(1, 2, 16, d_head, generator=torch.Generator().manual_seed(0))
    x = x.to(device=device, dtype=getattr(torch, dtype)).requires_grad_(grad)
    masked = mask_kind is not None
    mask = torch.zeros(16, 16, device=device, dtype=x.dtype) if masked else None
    if mask is not None and grad and mask_kind == "learned":
        mask.requires_grad_(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
                out = F.scaled_dot_product_attention(x, x, x, attn_mask=mask, is_causal=causal and not masked)
                if grad:
                    out.sum().backward()
        except (RuntimeError, NotImplementedError):
            why = [str(w.message).split("\n")[0] for w in caught if "kernel not used" in str(w.message)]
            name = backend.name.lower().replace("_attention", "") if backend is not None else "default"
            detail = f" ({why[0]})" if why else ""
            with_mask = f" with a {mask_kind} float mask" if masked else ""
            return (
                f"torch {torch.__version__} has no {name} SDPA kernel{with_mask} for {device} {dtype}{detail}"
            )
    return None


@register("softmax.sdpa")
class SDPADefault(_SDPA):
    """F.scaled_dot_product_attention with torch's own backend choice."""


def pinned(name: str, backend: SDPBackend, doc: str) -> type[_SDPA]:
    """`name`: SDPA pinned to one backend (each backend is one registered variant)."""
    cls = type(f"SDPA_{backend.name}", (_SDPA,), {"backend": backend, "__doc__": doc, "__module__": __name__})
    return register(name)(cls)


SDPAMath = pinned(
    "softmax.sdpa_math",
    SDPBackend.MATH,
    "SDPA pinned to the math backend (composite ops, materialises scores).",
)
SDPAFlash = pinned(
    "softmax.sdpa_flash",
    SDPBackend.FLASH_ATTENTION,
    "SDPA pinned to the FlashAttention backend (CPU flash kernel, or FA2 on CUDA).",
)
SDPAEfficient = pinned(
    "softmax.sdpa_efficient",
    SDPBackend.EFFICIENT_ATTENTION,
    "SDPA pinned to the memory-efficient (xformers-derived) backend; CUDA only.",
)
SDPACudnn = pinned(
    "softmax.sdpa_cudnn", SDPBackend.CUDNN_ATTENTION, "SDPA pinned to the cuDNN backend; CUDA only."
)

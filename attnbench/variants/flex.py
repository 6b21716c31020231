"""FlexAttention as the softmax and sparse families both use it: one compiled function (so a
sweep shares one compile cache and the harness's recompile guard sees one function), what it
needs to run on a device here, and the forms it lacks."""

from __future__ import annotations

import functools

import torch

from attnbench.cases import Case
from attnbench.errors import Unsupported


@functools.cache
def compiled_flex():
    """`flex_attention` under torch.compile (inductor C++ on CPU, Triton on GPU). Uncompiled it
    falls back to an eager path that materialises every score."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def unavailable_reason(device: str) -> str | None:
    """Why FlexAttention cannot run on `device` here, or None."""
    try:
        import torch.nn.attention.flex_attention
    except ImportError:
        return f"torch {torch.__version__} has no FlexAttention"
    if device == "cpu":
        try:
            from torch._inductor import cpp_builder

            cpp_builder.get_cpp_compiler()
        except ImportError:
            pass  # inductor moved its helper: let the first compile tell
        except Exception as e:  # inductor raises its own error types here
            return f"inductor finds no C++ compiler for CPU kernels ({e})"
    if device == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "FlexAttention on CUDA needs Triton (pip install triton)"
    return None


def check(case: Case) -> None:
    """Raise `Unsupported` for a case FlexAttention cannot run in this torch."""
    if case.device == "cpu" and case.mode not in ("fwd", "decode"):
        raise Unsupported(f"FlexAttention has no CPU backward in torch {torch.__version__}")

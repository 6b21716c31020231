"""`linear.<map>@triton`: the chunked form of each linear-attention variant run by the Triton
kernels in `attnbench.kernels` (forward only, causal, CUDA).

The sum rule with an elementwise map (identity, elu) fuses φ and the normalisation into
`chunk_linear_attn`; the other maps compute φ (and sum normalisation) in PyTorch and hand the
features over. The delta rule computes φ and β in PyTorch and runs `chunk_delta_rule`.
Parameters, weights and the float64 oracle are those of the PyTorch variant each subclasses.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

import torch

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.kernels import budget, check_chunk
from attnbench.registry import register
from attnbench.variants.linear.layer import LinearAttention
from attnbench.variants.linear.variants import LinearDPFP, LinearElu, LinearFavor, LinearIdentity, LinearT2R


class TritonChunk(LinearAttention):
    """The Triton kernels behind a LinearAttention subclass (listed first among the bases)."""

    causal_modes: ClassVar[tuple[bool, ...]] = (True,)
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    dtypes: ClassVar[tuple[str, ...]] = ("float32", "bfloat16", "float16")
    modes: ClassVar[tuple[str, ...]] = ("fwd",)

    @classmethod
    def unavailable_reason(cls, device: str) -> str | None:
        if importlib.util.find_spec("triton") is None:
            return "package triton not installed (pip install triton)"
        return None

    def check(self, case: Case) -> None:
        super().check(case)
        if self.form != "chunk":
            raise Unsupported(f"{self.name} runs the chunk form only, not form={self.form}")
        check_chunk(self.chunk)
        dtype = "ieee" if case.dtype == "float32" else "tf32"
        budget.choose_tiles(
            self.d_dot(), self.d_head, self.chunk, delta=self.rule == "delta", precision=dtype
        )

    def compute(self, q, k, v, *, causal: bool, beta: torch.Tensor | None) -> torch.Tensor:
        if self.form != "chunk":
            raise Unsupported(f"{self.name} runs the chunk form only, not form={self.form}")
        if self.rule == "delta":
            from attnbench.kernels.delta_chunk import chunk_delta_rule

            phi_q, phi_k = self.features(q, k)
            beta = self.beta_for(k, beta)
            return chunk_delta_rule(phi_q, phi_k, v, beta, normalize=self.norm == "attn", chunk=self.chunk)
        from attnbench.kernels.linear_chunk import chunk_linear_attn

        fused = self.feature_map.elementwise
        if fused is not None:
            return chunk_linear_attn(q, k, v, feature_map=fused, norm=self.norm, chunk=self.chunk)
        phi_q, phi_k = self.features(q, k)
        norm = "attn" if self.norm == "attn" else "none"
        return chunk_linear_attn(phi_q, phi_k, v, feature_map="identity", norm=norm, chunk=self.chunk)


@register("linear.identity@triton")
class TritonIdentity(TritonChunk, LinearIdentity):
    """linear.identity's chunked form as a Triton kernel (φ fused; CUDA, forward)."""


@register("linear.elu@triton")
class TritonElu(TritonChunk, LinearElu):
    """linear.elu's chunked form as a Triton kernel (φ and normalisation fused; CUDA, forward)."""


@register("linear.dpfp@triton")
class TritonDPFP(TritonChunk, LinearDPFP):
    """linear.dpfp's chunked form as a Triton kernel (φ in PyTorch; CUDA, forward)."""


@register("linear.favor@triton")
class TritonFavor(TritonChunk, LinearFavor):
    """linear.favor's chunked form as a Triton kernel (φ in PyTorch; CUDA, forward)."""


@register("linear.t2r@triton")
class TritonT2R(TritonChunk, LinearT2R):
    """linear.t2r's chunked form as a Triton kernel (φ in PyTorch; CUDA, forward)."""


def registered_configs(sizes=(64, 128, 256), max_d_dot: int = 384) -> list[tuple[int, int, int, bool]]:
    """(d_dot, d, chunk, delta) of every `linear.*@triton` variant at its default parameters
    (DPFP at each registered ν), both rules, at each head size `sizes`, d_dot ≤ `max_d_dot`:
    the configurations the shared-memory budget must hold for."""
    configs = set()
    for cls in TritonChunk.__subclasses__():
        nus = (1, 2, 3) if "nu" in cls.params else (None,)
        for d in sizes:
            for nu in nus:
                f = cls.dims(d, cls.params if nu is None else {**cls.params, "nu": nu})
                if f <= max_d_dot:
                    configs.update((f, d, int(cls.params["chunk"]), delta) for delta in (False, True))
    return sorted(configs)

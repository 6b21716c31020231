"""`LinearAttention`: a feature map, an update rule and a normalisation, in one of three forms.

Parameters (sweepable, each a separate row in results): `rule` (sum | delta), `norm`
(none | attn | sum), `form` (chunk | parallel | recurrent), `chunk` (the chunk length C).
β for the delta rule is passed to `forward(..., beta=)` as (B, H, N) in (0, 1), or produced by
the layer: β = σ(k·w_h + b_h), a learned vector per head.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from attnbench.cases import Case, Shape
from attnbench.errors import Unsupported, UserError
from attnbench.registry import Variant
from attnbench.variants.linear import chunked, forms
from attnbench.variants.linear.feature_maps import FeatureMap

RULES = ("sum", "delta")
NORMS = ("none", "attn", "sum")
FORMS = ("chunk", "parallel", "recurrent")


class LinearAttention(Variant):
    family: ClassVar[str] = "linear"
    reference: ClassVar[str] = "linear"
    decode_state: ClassVar[str] = "constant"
    base_params: ClassVar[dict[str, Any]] = {"rule": "sum", "norm": "attn", "form": "chunk", "chunk": 64}
    params: ClassVar[Mapping[str, Any]] = base_params
    param_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {"rule": RULES, "norm": NORMS, "form": FORMS}
    param_minimum: ClassVar[Mapping[str, int]] = {"chunk": 1}
    # the no-grad causal sum rule on a CPU runs the fused C kernel for elementwise maps
    # (`kernels/cpu_linear.py`); False keeps the eager stream (a benchmark's comparison)
    cpu_kernel: ClassVar[bool] = True
    flops_formula: ClassVar[str] = (
        "the matmul work of the form, masked halves included; per token and head, F=d_dot: "
        "chunk C: 2C(F+D) + 4FD (delta: C(5F+3D) + 6FD) over N rounded up to C; parallel: C=N without "
        "the FD terms; recurrent 4FD (delta 6FD); non-causal 4FD (+2F with attn norm); + φ; fwd+bwd 3×"
    )

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        p = self.hparams
        self.rule, self.norm, self.form, self.chunk = p["rule"], p["norm"], p["form"], int(p["chunk"])
        self.feature_map = self.make_feature_map(d_head, p)
        if self.rule == "delta":
            self.beta_weight = nn.Parameter(torch.randn(heads, d_head) * d_head**-0.5)
            self.beta_bias = nn.Parameter(torch.zeros(heads))

    # --- what a subclass provides ------------------------------------------------------------
    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        raise NotImplementedError

    @classmethod
    def feature_flops(cls, d_head: int, params: Mapping[str, Any]) -> int:
        """FLOPs of φ on one token (matmul maps only; elementwise maps count 0)."""
        return 0

    # --- metadata ------------------------------------------------------------------------------
    @classmethod
    def training_caveat(cls, params: Mapping[str, Any]) -> str | None:
        """The delta rule under attention normalisation: the memory holds values, not sums of
        them, yet the read divides by φ(q)·Σφ(k), which grows with every write, so the answer
        shrinks with the sequence (FAVOR+ m = 16 at S = 8: read ≈ 0.05 where 1 is due, loss
        0.49; ELU+1 diverged in the extrapolation LM). The fast-weight paper pairs the delta
        rule with sum normalisation."""
        p = {**cls.params, **params}
        if p["rule"] == "delta" and p["norm"] == "attn":
            return (
                "the delta rule with attention normalisation divides a delta memory (values, not sums) "
                "by φ(q)·Σφ(k), which grows with every write: expect it to learn badly; the paper pairs "
                'the delta rule with norm = "sum"'
            )
        return None

    def d_dot(self) -> int:
        return self.feature_map.d_dot

    @classmethod
    def dims(cls, d_head: int, params: Mapping[str, Any]) -> int:
        return cls.make_feature_map(d_head, params).d_dot

    @classmethod
    def flops(cls, shape: Shape, *, causal: bool, mode: str, params: Mapping[str, Any]) -> int:
        """FLOPs the chosen form computes (what FlopCounterMode sees for the chunk and parallel
        forms; the fused CPU kernel runs the same products through BLAS): the chunked form
        multiplies whole C×C blocks, masked half included, and pads N up to a multiple of C;
        the parallel form is one chunk of length N."""
        p = {**cls.params, **params}
        f, d, n = cls.dims(shape.d_head, p), shape.d_head, shape.seq_len
        delta = p["rule"] == "delta"
        tokens = n
        if not causal:
            per_token = 4 * f * d
        elif p["form"] == "recurrent":
            per_token = (6 if delta else 4) * f * d
        else:
            c, state = (n, 0) if p["form"] == "parallel" else (int(p["chunk"]), (6 if delta else 4) * f * d)
            tokens = -(-n // c) * c
            per_token = (c * (5 * f + 3 * d) if delta else 2 * c * (f + d)) + state
        if p["norm"] == "attn" and not causal:
            per_token += 2 * f  # the denominators' φ(q)·z (elementwise in the causal forms)
        fwd = shape.batch * shape.heads * (tokens * per_token + 2 * n * cls.feature_flops(d, p))
        return fwd if mode == "fwd" else 3 * fwd

    def check(self, case: Case) -> None:
        super().check(case)
        if self.rule == "delta" and not case.causal:
            raise Unsupported("the delta rule is sequential: it has a causal form only")
        if self.norm != "none" and not self.feature_map.nonnegative:
            raise Unsupported(f"{self.norm} normalisation needs a non-negative feature map")
        if self.form == "parallel" and case.seq_len > 16384:
            raise Unsupported("the parallel form holds N×N scores: limited to N ≤ 16384")

    # --- computation ---------------------------------------------------------------------------
    def features(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi_q, phi_k = self.feature_map(q), self.feature_map(k)
        if self.norm == "sum":
            return forms.sum_normalised(phi_q), forms.sum_normalised(phi_k)
        return phi_q, phi_k

    def learned_beta(self, k: torch.Tensor) -> torch.Tensor:
        """β = σ(k·w_h + b_h) for raw keys k (..., H, N, D) -> (..., H, N)."""
        return _learned_beta(self.beta_weight, self.beta_bias, k)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        causal: bool = False,
        beta: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Validate the call, then `compute`: the PyTorch forms here, a kernel in the `@triton`
        and fla-core subclasses. β is given, or learned from the keys (`beta_for`)."""
        if causal not in self.causal_modes or (self.rule == "delta" and not causal):
            raise Unsupported(f"{self.name} has a causal form only (the delta rule is sequential)")
        if self.rule == "sum" and beta is not None:
            raise UserError("beta is an input of the delta rule only")
        self.feature_map.resample()  # one draw per call, shared by queries and keys
        return self.compute(q, k, v, causal=causal, beta=beta)

    def beta_for(self, k: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor | None:
        """The delta rule's β: given, or learned from the raw keys; None for the sum rule."""
        return self.learned_beta(k) if self.rule == "delta" and beta is None else beta

    def compute(self, q, k, v, *, causal: bool, beta: torch.Tensor | None) -> torch.Tensor:
        """q, k, v (B, H, N, D); `beta` (B, H, N), or None for the sum rule and a learned β."""
        if q.dtype in (torch.float16, torch.bfloat16):
            # as fused kernels do: features, scores and memory in float32, the output cast back
            b = None if beta is None else beta.float()
            return self.compute(q.float(), k.float(), v.float(), causal=causal, beta=b).to(q.dtype)
        normalize = self.norm == "attn"
        if causal and self.form == "chunk":
            return self.chunk_form(q, k, v, beta)
        beta = self.beta_for(k, beta)
        phi_q, phi_k = self.features(q, k)
        if not causal:
            return forms.global_sum(phi_q, phi_k, v, normalize=normalize)
        if self.form == "parallel":
            return forms.parallel(phi_q, phi_k, v, normalize=normalize, beta=beta)
        return self.scan(phi_q, phi_k, v, beta, normalize)

    def chunk_form(self, q, k, v, beta: torch.Tensor | None) -> torch.Tensor:
        """The chunked form, streamed: φ and a learned β are applied block by block and, with
        grad, recomputed in the backward, which returns their parameters' gradients too."""
        learned = self.rule == "delta" and beta is None
        beta_of_keys = functools.partial(_learned_beta, self.beta_weight, self.beta_bias) if learned else None
        spec = chunked.Spec(
            self.rule == "delta",
            self.norm == "attn",
            self.chunk,
            phi=self.phi_map(),
            d_dot=self.d_dot(),
            phi_into=None if self.feature_map.into is None else self.phi_into,
            beta_of_keys=beta_of_keys,
            elementwise=self.feature_map.elementwise if self.cpu_kernel else None,
            sum_norm=self.norm == "sum",
        )
        trained = tuple(p for p in self.parameters() if p.requires_grad)
        return chunked.chunked(spec, q, k, v, beta, trained)

    def phi_map(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """φ (and sum normalisation) bound to the tensors the feature map holds now, so that a
        backward recomputing φ uses this call's FAVOR+ draw even after a later redraw."""
        tensors = {**dict(self.feature_map.named_parameters()), **dict(self.feature_map.named_buffers())}
        fm, norm = self.feature_map, self.norm

        def phi(x: torch.Tensor) -> torch.Tensor:
            features = torch.func.functional_call(fm, tensors, (x,))
            return forms.sum_normalised(features) if norm == "sum" else features

        return phi

    def phi_into(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """φ (and sum normalisation) of the map as it is now, without autograd, into `out`,
        for maps with `into`: the forward's, which runs before any later redraw."""
        with torch.no_grad():
            features = self.feature_map.into(x, out)
            return forms.sum_normalised_(features) if self.norm == "sum" else features

    def scan(self, phi_q, phi_k, v, beta, normalize: bool) -> torch.Tensor:
        state = forms.init_state(*v.shape[:2], phi_k.shape[-1], v.shape[-1], device=v.device, dtype=v.dtype)
        outs = []
        for t in range(v.shape[2]):
            b = None if beta is None else beta[:, :, t]
            out, state = forms.step(
                state, phi_q[:, :, t], phi_k[:, :, t], v[:, :, t], normalize=normalize, beta=b
            )
            outs.append(out)
        return torch.stack(outs, 2)

    # --- recurrent form (decoding) ---------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Any:
        return forms.init_state(batch, self.heads, self.d_dot(), self.d_head, device=device, dtype=dtype)

    def step(
        self,
        state: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        beta: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        """One token per sequence: q, k, v (B, H, D) -> output (B, H, D) and the new state."""
        phi_q, phi_k = self.features(q, k)
        if self.rule == "delta" and beta is None:
            beta = self.learned_beta(k.unsqueeze(-2)).squeeze(-1)
        return forms.step(state, phi_q, phi_k, v, normalize=self.norm == "attn", beta=beta)

    # --- the float64 oracle's inputs ------------------------------------------------------------
    def oracle_kwargs(self) -> dict[str, Any]:
        """The oracle recomputes φ and β in float64 from a float64 twin of this layer, taken at
        its first use, i.e. after the forward it checks (and after any FAVOR+ redraw)."""
        twin = functools.cache(self.oracle_twin)
        kwargs: dict[str, Any] = {
            "feature_map": lambda x: twin().feature_map(x),
            "rule": self.rule,
            "norm": self.norm,
        }
        if self.rule == "delta":
            kwargs["beta"] = lambda k: twin().learned_beta(k)
        return kwargs


def _learned_beta(weight: torch.Tensor, bias: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """σ(k·w_h + b_h): raw keys (..., H, N, D), weight (H, D), bias (H) -> (..., H, N)."""
    return torch.sigmoid((k * weight.unsqueeze(-2)).sum(-1) + bias.unsqueeze(-1))

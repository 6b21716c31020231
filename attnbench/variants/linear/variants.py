"""The registered linear-attention variants: one per feature map, each with every update
rule, normalisation and form through its parameters (e.g. `linear.dpfp[nu=2,rule=delta]`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attnbench.errors import UserError
from attnbench.registry import register
from attnbench.variants.linear.feature_maps import (
    DPFP,
    KERNELS,
    REDRAWS,
    T2R,
    EluPlusOne,
    Favor,
    FeatureMap,
    Identity,
)
from attnbench.variants.linear.layer import LinearAttention


@register("linear.identity")
class LinearIdentity(LinearAttention):
    """Linear attention with φ(x) = x and no normalisation (the plain fast-weight memory)."""

    params: ClassVar[Mapping[str, Any]] = {**LinearAttention.base_params, "norm": "none"}

    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        return Identity(d_head)


@register("linear.elu")
class LinearElu(LinearAttention):
    """Linear attention with φ(x) = elu(x) + 1 (Katharopoulos et al. 2020)."""

    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        return EluPlusOne(d_head)


@register("linear.dpfp")
class LinearDPFP(LinearAttention):
    """Linear attention with DPFP-ν features, d_dot = 2·d·ν (Schlag et al. 2021)."""

    params: ClassVar[Mapping[str, Any]] = {**LinearAttention.base_params, "nu": 1}
    param_minimum: ClassVar[Mapping[str, int]] = {**LinearAttention.param_minimum, "nu": 1}

    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        return DPFP(d_head, int(params["nu"]))


@register("linear.favor")
class LinearFavor(LinearAttention):
    """Performer's FAVOR+: m orthogonal positive random features (±, d_dot = 2m).

    `redraw`: false (fixed features), true (redrawn on every training forward) or "always"
    (every forward, evaluation too: the fast-weight paper's code); `kernel`: "softmax"
    (exp(q·k/√d), the default) or "exp" (exp(q·k), the paper's code)."""

    params: ClassVar[Mapping[str, Any]] = {
        **LinearAttention.base_params,
        "m": 64,
        "redraw": False,
        "kernel": "softmax",
    }
    param_minimum: ClassVar[Mapping[str, int]] = {**LinearAttention.param_minimum, "m": 1}
    param_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        **LinearAttention.param_choices,
        "kernel": KERNELS,
    }
    error_scale: ClassVar[float] = 4.0  # exp features amplify rounding in the inputs

    @classmethod
    def resolve_params(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        # `redraw` is a bool or "always": checked here, not by the type of its default
        redraw = given.get("redraw", cls.params["redraw"])
        if redraw not in REDRAWS or (redraw != "always" and not isinstance(redraw, bool)):
            raise UserError(f'{cls.name}: redraw must be false, true or "always", not {redraw!r}')
        p = super().resolve_params({k: v for k, v in given.items() if k != "redraw"})
        return {**p, "redraw": redraw}

    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        return Favor(d_head, int(params["m"]), redraw=params["redraw"], kernel=params["kernel"])

    @classmethod
    def dims(cls, d_head: int, params: Mapping[str, Any]) -> int:
        return 2 * int(params["m"])  # without drawing features (that would use the global generator)

    @classmethod
    def feature_flops(cls, d_head: int, params: Mapping[str, Any]) -> int:
        return 2 * d_head * int(params["m"])


@register("linear.t2r")
class LinearT2R(LinearAttention):
    """T2R: learned φ(x) = relu(W x + b) with k features (Kasai et al. 2021)."""

    params: ClassVar[Mapping[str, Any]] = {**LinearAttention.base_params, "k": 32}
    param_minimum: ClassVar[Mapping[str, int]] = {**LinearAttention.param_minimum, "k": 1}
    # a pre-activation within rounding of 0 takes the other relu branch in float32 than in the
    # float64 oracle: one feature's whole gradient flips, ~1e-3 of dq at small N
    error_scale: ClassVar[float] = 30.0

    def __init__(self, *, heads: int, d_head: int, **params: Any) -> None:
        super().__init__(heads=heads, d_head=d_head, **params)
        self.feature_map = T2R(d_head, int(self.hparams["k"]), heads=heads)  # W, b per head

    @classmethod
    def make_feature_map(cls, d_head: int, params: Mapping[str, Any]) -> FeatureMap:
        return T2R(d_head, int(params["k"]))

    @classmethod
    def feature_flops(cls, d_head: int, params: Mapping[str, Any]) -> int:
        return 2 * d_head * int(params["k"])

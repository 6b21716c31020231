"""Float64 oracles in plain PyTorch. Variants name theirs by key (`Variant.reference`);
measurement and tests look it up here. Fast code never imports this package."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attnbench.reference.compressive import compressive_attention
from attnbench.reference.linear import linear_attention
from attnbench.reference.softmax import softmax_attention

Oracle = Callable[..., torch.Tensor]

ORACLES: dict[str, Oracle] = {
    "softmax": softmax_attention,
    "linear": linear_attention,
    "compressive": compressive_attention,
    "masked_softmax": softmax_attention,  # with the variant's `allowed` pattern
}


def register(key: str) -> Callable[[Oracle], Oracle]:
    """Add a float64 oracle under `key`, for a variant (a plugin's, say) whose maths no oracle
    here computes: `oracle(q, k, v, *, causal, rows=None, **its oracle_kwargs)` returning the
    output rows `rows` (all when None) in float64. The variant names it in `reference`."""

    def add(oracle: Oracle) -> Oracle:
        existing = ORACLES.get(key)
        if existing is not None and existing.__qualname__ != oracle.__qualname__:
            raise ValueError(f"oracle {key!r} registered twice: {existing} and {oracle}")
        ORACLES[key] = oracle
        return oracle

    return add


def get(key: str) -> Oracle:
    """The oracle named `key`; a variant naming one that does not exist is a UserError."""
    from attnbench.errors import UserError, did_you_mean

    if key not in ORACLES:
        raise UserError(
            f"no reference oracle {key!r}{did_you_mean(key, ORACLES)}; known: {', '.join(sorted(ORACLES))}"
        )
    return ORACLES[key]

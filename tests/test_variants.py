"""Every registered variant that runs here agrees with its float64 oracle, forward and
backward, causal and not, on random shapes (fla-style relative error bound per dtype)."""

from __future__ import annotations

import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbench import reference
from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.measure.numerics import relative_error
from attnbench.registry import REGISTRY

# ‖out − ref‖ / ‖ref‖ bounds: forward, gradients
BOUNDS = {
    "float64": (1e-10, 1e-9),
    "float32": (2e-5, 1e-4),
    "bfloat16": (2e-2, 5e-2),
    "float16": (3e-3, 1e-2),
}
RUNNABLE = [v for v in REGISTRY.all() if v.reference and v.available("cpu") and not v.approximates]


def gradient_error(actual: torch.Tensor, expected: torch.Tensor, scale: torch.Tensor) -> float:
    """Relative error, the denominator floored at ‖scale‖ (the value gradient's norm, the
    natural size of gradients through the layer): a gradient that is zero in exact arithmetic
    (q and k at N = 1 under attention normalisation) has only rounding noise to compare."""
    diff = (actual.double() - expected.double()).norm().item()
    denom = max(expected.double().norm().item(), scale.double().norm().item())
    return diff / denom if denom > 0 else diff


def check_against_oracle(cls, *, batch, heads, seq_len, d_head, dtype, causal, device="cpu"):
    if causal not in cls.causal_modes:
        pytest.skip(f"{cls.name} has no {'causal' if causal else 'non-causal'} form")
    mode = "fwd+bwd" if "fwd+bwd" in cls.modes else "fwd"
    case = Case(cls.name, (), batch, heads, seq_len, d_head, dtype, device, causal, mode)
    torch.manual_seed(zlib.crc32(repr((batch, heads, seq_len, d_head, dtype, causal)).encode()))
    module = cls(heads=heads, d_head=d_head)
    try:
        module.check(case)
    except Unsupported:
        mode = "fwd"
        module.check(Case(cls.name, (), batch, heads, seq_len, d_head, dtype, device, causal, mode))
    module = module.to(device=device, dtype=getattr(torch, dtype))
    grads = mode == "fwd+bwd"
    x64 = [torch.randn(batch, heads, seq_len, d_head, dtype=torch.float64, device=device) for _ in range(3)]
    x = [t.to(getattr(torch, dtype)).requires_grad_(grads) for t in x64]
    x64 = [t.to(getattr(torch, dtype)).double().requires_grad_(grads) for t in x64]  # same rounded inputs
    out = module(*x, causal=causal)
    ref = reference.get(cls.reference)(*x64, causal=causal, **module.oracle_kwargs())
    assert out.shape == ref.shape and out.dtype == x[0].dtype
    fwd_bound, grad_bound = (bound * cls.error_scale for bound in BOUNDS[dtype])
    err = relative_error(out.detach(), ref.detach())
    assert err < fwd_bound, f"{cls.name} {dtype} causal={causal}: output error {err:.2e} ≥ {fwd_bound:.0e}"
    if grads:
        g = torch.randn(ref.shape, dtype=torch.float64, device=device)
        got = torch.autograd.grad(out, x, g.to(out.dtype))
        want = torch.autograd.grad(ref, x64, g.to(out.dtype).double())
        for name, a, b in zip("qkv", got, want, strict=True):
            e = gradient_error(a, b, want[2])
            assert e < grad_bound, (
                f"{cls.name} {dtype} causal={causal}: d{name} error {e:.2e} ≥ {grad_bound:.0e}"
            )


EAGER = [v for v in RUNNABLE if not v.compiled]
COMPILED = [v for v in RUNNABLE if v.compiled]


@pytest.mark.parametrize("cls", EAGER, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    seq_len=st.integers(1, 200),
    d_head=st.sampled_from([8, 16, 32, 64, 80]),
)
def test_eager_variant_agrees_with_float64_oracle(cls, dtype, causal, batch, heads, seq_len, d_head):
    if dtype not in cls.dtypes:
        pytest.skip(f"{cls.name} does not support {dtype}")
    check_against_oracle(
        cls, batch=batch, heads=heads, seq_len=seq_len, d_head=d_head, dtype=dtype, causal=causal
    )


@pytest.mark.parametrize("cls", [v for v in EAGER if "float64" in v.dtypes], ids=lambda c: c.name)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_float64_variant_matches_oracle_to_rounding(cls, causal):
    check_against_oracle(cls, batch=2, heads=3, seq_len=77, d_head=32, dtype="float64", causal=causal)


# compiled variants: each new shape compiles (seconds on CPU), so a few fixed odd shapes
@pytest.mark.parametrize("cls", COMPILED, ids=lambda c: c.name)
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((2, 3, 77, 32), "float32"), ((1, 2, 256, 64), "float32"), ((1, 2, 128, 64), "bfloat16")],
    ids=str,
)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_compiled_variant_agrees_with_float64_oracle(cls, shape, dtype, causal):
    b, h, n, d = shape
    check_against_oracle(cls, batch=b, heads=h, seq_len=n, d_head=d, dtype=dtype, causal=causal)

"""The Triton kernels (attnbench.kernels) and the `linear.*@triton` variants agree with their
PyTorch twins. Without CUDA they run under Triton's interpreter on CPU tensors, so shapes
are tiny (the interpreter runs each program in numpy)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported
pytest.importorskip("triton")

import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.kernels.delta_chunk import chunk_delta_rule
from attnbench.kernels.linear_chunk import chunk_linear_attn, tiles_for
from attnbench.measure.numerics import relative_error
from attnbench.registry import REGISTRY
from attnbench.variants.linear import chunked, forms

if not torch.cuda.is_available() and not isinstance(tl.zeros, InterpretedFunction):
    # triton.language came in (with torch._dynamo, say) before TRITON_INTERPRET was set
    pytest.skip("set TRITON_INTERPRET=1 before triton is imported (conftest.py)", allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LENGTHS = (1, 37, 64, 100)
BOUND = 1e-4


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def phi(x: torch.Tensor, feature_map: str, norm: str) -> torch.Tensor:
    x = F.elu(x) + 1 if feature_map == "elu" else x
    return x / (x.sum(-1, keepdim=True) + forms.EPS) if norm == "sum" else x


@pytest.mark.parametrize(
    ("feature_map", "norm"),
    [("identity", "none"), ("identity", "attn"), ("elu", "none"), ("elu", "attn"), ("elu", "sum")],
)
@pytest.mark.parametrize(("d_k", "d_v"), [(16, 32), (32, 16), (20, 24)], ids=str)  # 20, 24: padded
def test_chunk_linear_attn_matches_chunk_sum(feature_map, norm, d_k, d_v):
    for n in LENGTHS:
        q, k, v = (randn(2, 2, n, d, seed=n + i) for i, d in enumerate((d_k, d_k, d_v)))
        if feature_map == "identity" and norm != "none":
            q, k = q.abs(), k.abs()  # normalisation needs non-negative features
        with torch.no_grad():
            out = chunk_linear_attn(q, k, v, feature_map=feature_map, norm=norm, chunk=16)
        phi_q, phi_k = phi(q, feature_map, norm), phi(k, feature_map, norm)
        want = chunked.chunk_sum(phi_q, phi_k, v, normalize=norm == "attn", chunk=16)
        assert out.shape == v.shape and out.dtype == v.dtype
        err = relative_error(out, want)
        assert err < BOUND, f"{feature_map}/{norm} N={n}: error {err:.2e}"


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
@pytest.mark.parametrize(("d_k", "d_v"), [(16, 32), (32, 16), (20, 24)], ids=str)
def test_chunk_delta_rule_matches_chunk_delta(normalize, d_k, d_v):
    for n in LENGTHS:
        q, k = (phi(randn(2, 2, n, d_k, seed=n + i), "elu", "sum") for i in (0, 1))  # ‖φ(k)‖ ≤ 1: stable
        v, beta = randn(2, 2, n, d_v, seed=n + 2), torch.sigmoid(randn(2, 2, n, seed=n + 3))
        with torch.no_grad():
            out = chunk_delta_rule(q, k, v, beta, normalize=normalize, chunk=16)
        want = chunked.chunk_delta(q, k, v, beta, normalize=normalize, chunk=16)
        assert out.shape == v.shape and out.dtype == v.dtype
        err = relative_error(out, want)
        assert err < BOUND, f"normalize={normalize} N={n}: error {err:.2e}"


def test_kernels_reject_shapes_they_cannot_run():
    q = k = v = randn(1, 1, 8, 16, seed=0)
    with pytest.raises(Unsupported, match="power of two"):
        chunk_linear_attn(q, k, v, chunk=24)
    with pytest.raises(Unsupported, match="power of two"):
        chunk_delta_rule(q, k, v, torch.full((1, 1, 8), 0.5), chunk=8)
    with pytest.raises(Unsupported, match="shared memory"):  # a 1024 × 1024 score tile
        chunk_linear_attn(q, k, v, chunk=1024)
    with pytest.raises(Unsupported, match="relu"):
        chunk_linear_attn(q, k, v, feature_map="relu")


# every map, both rules; norm=sum is fused for elu and done in PyTorch for dpfp
VARIANT_CASES = [
    ("linear.identity@triton", {"chunk": 16}),
    ("linear.identity@triton", {"chunk": 16, "rule": "delta"}),
    ("linear.elu@triton", {"chunk": 16}),
    ("linear.elu@triton", {"chunk": 16, "norm": "sum"}),
    ("linear.elu@triton", {"chunk": 16, "rule": "delta", "norm": "sum"}),
    ("linear.dpfp@triton", {"chunk": 16, "norm": "sum"}),
    ("linear.dpfp@triton", {"chunk": 16, "rule": "delta"}),
    ("linear.favor@triton", {"chunk": 16, "m": 16}),
    ("linear.favor@triton", {"chunk": 16, "m": 16, "rule": "delta"}),
    ("linear.t2r@triton", {"chunk": 16, "k": 16}),
    ("linear.t2r@triton", {"chunk": 16, "k": 16, "rule": "delta", "norm": "sum"}),
]


@pytest.mark.parametrize(("name", "params"), VARIANT_CASES, ids=lambda x: str(x))
def test_triton_variant_agrees_with_its_pytorch_parent(name, params):
    cls = REGISTRY.get(name)
    parent = next(c for c in cls.__mro__[1:] if c.name and "@" not in c.name)
    torch.manual_seed(0)
    module = cls(heads=2, d_head=16, **params).to(DEVICE).eval()
    twin = parent(heads=2, d_head=16, **params).to(DEVICE).eval()
    twin.load_state_dict(module.state_dict())
    # inputs scaled down so the delta rule's writes stay contractive (β‖φ(k)‖² < 2)
    q, k, v = (randn(2, 2, 100, 16, seed=i) * (0.25 if i < 2 else 1) for i in range(3))
    with torch.no_grad():
        out, want = module(q, k, v, causal=True), twin(q, k, v, causal=True)
    err = relative_error(out, want)
    assert err < BOUND, f"{name} {params}: error {err:.2e}"


def test_triton_variants_declare_a_causal_chunked_cuda_forward():
    cls = REGISTRY.get("linear.elu@triton")
    assert not cls.available("cpu") and "cuda" in cls.available("cpu").reason
    assert cls.description.startswith("linear.elu's chunked form")

    def case(causal=True, mode="fwd", dtype="float32"):
        return Case(cls.name, (), 1, 2, 64, 16, dtype, "cuda", causal, mode)

    cls(heads=2, d_head=16).check(case(dtype="bfloat16"))
    for bad, params, match in [
        (case(causal=False), {}, "non-causal"),
        (case(mode="fwd+bwd"), {}, "fwd"),
        (case(dtype="float64"), {}, "float64"),
        (case(), {"form": "parallel"}, "chunk form"),
        (case(), {"chunk": 24}, "power of two"),
    ]:
        with pytest.raises(Unsupported, match=match):
            cls(heads=2, d_head=16, **params).check(bad)
    big = REGISTRY.get("linear.dpfp@triton")(heads=2, d_head=64, nu=3)  # F = 384: tiled, it runs
    big.check(Case(big.name, (), 1, 2, 64, 64, "float32", "cuda", True, "fwd"))
    with pytest.raises(Unsupported, match="shared memory"):
        cls(heads=2, d_head=16, chunk=1024).check(case())


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalized"])
def test_tiled_delta_rule_at_d_dot_256_by_d_128(normalize):
    """DPFP-2's shape at d = 64 (d_dot 256) with d = 128 values: 4 feature tiles × 2 value
    tiles of 64, the configuration that needed 440 KiB before the tiling (small N and batch)."""
    n = 40
    q, k = (phi(randn(1, 2, n, 256, seed=i), "elu", "sum") for i in (0, 1))
    v, beta = randn(1, 2, n, 128, seed=2), torch.sigmoid(randn(1, 2, n, seed=3))
    assert tiles_for(q, v, 16, delta=True).block_k == 64
    with torch.no_grad():
        out = chunk_delta_rule(q, k, v, beta, normalize=normalize, chunk=16)
    err = relative_error(out, chunked.chunk_delta(q, k, v, beta, normalize=normalize, chunk=16))
    assert err < BOUND, f"error {err:.2e}"


@pytest.mark.parametrize("norm", ["attn", "sum"])
def test_tiled_sum_rule_with_fused_elu_at_d_256(norm):
    """elu fused over 4 feature tiles; sum normalisation sums φ over all tiles first."""
    q, k, v = (randn(1, 2, 40, d, seed=i) for i, d in enumerate((256, 256, 128)))
    with torch.no_grad():
        out = chunk_linear_attn(q, k, v, feature_map="elu", norm=norm, chunk=16)
    want = chunked.chunk_sum(phi(q, "elu", norm), phi(k, "elu", norm), v, normalize=norm == "attn", chunk=16)
    err = relative_error(out, want)
    assert err < BOUND, f"error {err:.2e}"

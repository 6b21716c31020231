"""The streamed chunked form (`attnbench.variants.linear.chunked`): its backward against the
float64 scan, results independent of how the sequence is cut into blocks and segments, and
its exact CPU peak bytes against SDPA's at the README's shape (B = 1, H = 8, d = 64, fp32)."""

from __future__ import annotations

import functools

import pytest
import torch

from attnbench import reference
from attnbench.cases import Case
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute
from attnbench.variants.linear import chunk_blocks
from attnbench.variants.linear.chunked import Spec, chunked
from attnbench.variants.linear.feature_maps import DPFP, T2R, EluPlusOne, Favor
from attnbench.variants.linear.forms import sum_normalised

MEMORY_ONLY = MeasureSettings(metrics=("memory",), calibrate=False, warmup=0)
LENGTHS = (4096, 8192)
DELTA = ("linear.dpfp", (("rule", "delta"), ("norm", "sum")))  # the seed paper's delta rule


def inputs(n: int = 45, f: int = 12, d: int = 10, seed: int = 0):
    """float64 features (elu + 1; keys sum-normalised, so the delta rule's writes contract),
    values and β, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (EluPlusOne(f)(torch.randn(2, 3, n, f, generator=gen, dtype=torch.float64)) for _ in range(2))
    v = torch.randn(2, 3, n, d, generator=gen, dtype=torch.float64)
    beta = torch.sigmoid(torch.randn(2, 3, n, generator=gen, dtype=torch.float64))
    return [t.detach().requires_grad_() for t in (q, sum_normalised(k), v, beta)]


@pytest.mark.parametrize("norm", ["none", "attn"])
@pytest.mark.parametrize(("block", "segment"), [(8, 8), (8, 24), (16, 32), (64, 64)], ids=str)
def test_delta_rule_backward_matches_the_float64_scan(norm, block, segment):
    """Outputs to 1e-10 and ∂q, ∂k, ∂v, ∂β to 1e-8 against autograd through the float64 scan,
    with chunks of 8 cut into blocks and segments of several sizes (N = 45: a padded last chunk)."""
    q, k, v, beta = inputs()
    spec = Spec(True, norm == "attn", chunk=8, block=block, segment=segment)
    out = chunked(spec, q, k, v, beta)
    ref = reference.get("linear")(q, k, v, causal=True, rule="delta", norm=norm, beta=beta)
    assert relative_error(out, ref) < 1e-10
    g = torch.randn_like(ref)
    got, want = torch.autograd.grad(out, (q, k, v, beta), g), torch.autograd.grad(ref, (q, k, v, beta), g)
    for name, a, b in zip(["q", "k", "v", "beta"], got, want, strict=True):
        assert relative_error(a, b) < 1e-8, name


@pytest.mark.parametrize("rule", ["sum", "delta"])
def test_results_do_not_depend_on_block_or_segment(rule):
    """One chunking of the arithmetic (C = 8); blocks of 1, 2 and all chunks agree to rounding."""
    q, k, v, beta = inputs(n=64)
    beta = beta if rule == "delta" else None
    results = []
    for block, segment in [(8, 8), (16, 48), (64, 64)]:
        spec = Spec(rule == "delta", True, chunk=8, block=block, segment=segment)
        out = chunked(spec, q, k, v, beta)
        results.append((out, *torch.autograd.grad(out.square().sum(), (q, k, v))))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert relative_error(a, b) < 1e-12


@pytest.mark.parametrize(
    ("name", "params"),
    [("linear.t2r", {"rule": "delta", "norm": "sum", "k": 8}), ("linear.t2r", {"norm": "attn", "k": 8})],
    ids=str,
)
def test_parameter_gradients_match_the_recurrent_form(name, params, monkeypatch):
    """The learned β's and T2R's weights get their gradients from the per-block recomputation:
    equal to autograd through the token-by-token form, with one chunk per block."""
    monkeypatch.setattr(chunk_blocks, "BLOCK_BYTES", 1)
    q, k, v, _ = (t.detach() for t in inputs(n=40, f=16, d=16))
    grads = []
    for form in ("chunk", "recurrent"):
        torch.manual_seed(0)
        module = REGISTRY.get(name)(heads=3, d_head=16, form=form, chunk=8, **params).double()
        module(q, k, v, causal=True).square().sum().backward()
        grads.append({n: p.grad for n, p in module.named_parameters()})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        assert relative_error(grads[0][n], grads[1][n]) < 1e-8, n


MAPS_WITH_INTO = [
    ("linear.elu", {}),
    ("linear.dpfp", {"nu": 2}),  # two products, two slices of the buffer
    ("linear.favor", {"m": 8}),
    ("linear.t2r", {"k": 12}),
]


@pytest.mark.parametrize("norm", ["none", "attn", "sum"])
@pytest.mark.parametrize("rule", ["sum", "delta"])
@pytest.mark.parametrize(("name", "params"), MAPS_WITH_INTO, ids=str)
def test_the_forward_with_features_written_into_buffers_matches_the_recurrent_form(
    name, params, rule, norm, monkeypatch
):
    """Maps with `FeatureMap.into` write φ into buffers the stream reuses (`Scratch`): with
    chunks of 8 in blocks of 16 and N = 45 (a shorter last block, its buffers new), equal to
    the float64 token-by-token form, without grad and with."""
    monkeypatch.setattr(chunk_blocks, "BLOCK_BYTES", 1)  # one power of two of chunks a block: 16
    q, k, v, beta = (t.detach() for t in inputs(n=45, f=16, d=16))
    beta = beta if rule == "delta" else None
    outs, kw = {}, {"chunk": 8, "rule": rule, "norm": norm, **params}
    for form in ("chunk", "recurrent"):
        torch.manual_seed(0)  # FAVOR+'s projection: the same draw in both forms
        module = REGISTRY.get(name)(heads=3, d_head=16, form=form, **kw).double()
        module.cpu_kernel = False  # the stream, not the fused C kernel (tests/test_cpu_kernel.py)
        assert module.feature_map.into is not None
        with torch.no_grad():
            outs[form] = module(q, k, v, causal=True, beta=beta)
    assert relative_error(outs["chunk"], outs["recurrent"]) < 1e-12
    with_grad = module(q.requires_grad_(), k, v, causal=True, beta=beta)
    assert relative_error(with_grad, outs["recurrent"]) < 1e-12


@pytest.mark.parametrize(
    "feature_map",
    [EluPlusOne(8), DPFP(8, nu=2), Favor(8, m=6, seed=0).double(), T2R(8, 5, heads=3).double()],
    ids=lambda m: type(m).__name__,
)
def test_into_writes_its_buffer_with_the_forward_s_values(feature_map):
    x = torch.randn(2, 3, 40, 8, dtype=torch.float64) * 3
    out = torch.full((2, 3, 40, feature_map.d_dot), float("nan"), dtype=torch.float64)
    with torch.no_grad():  # as `LinearAttention.phi_into` calls it
        got = feature_map.into(x[:, :, 5:], out[:, :, 5:])  # strided input and output
    assert got.data_ptr() == out[:, :, 5:].data_ptr()
    assert torch.equal(got, feature_map(x[:, :, 5:]))  # the same operations as the forward
    if isinstance(feature_map, EluPlusOne):  # expm1 then + 1: equal to rounding
        assert torch.allclose(got, torch.nn.functional.elu(x[:, :, 5:]) + 1, rtol=0, atol=1e-15)


def test_the_forward_reuses_its_buffers_from_block_to_block(monkeypatch):
    """Blocks after the first allocate no buffer of their own: every role is served once."""
    served: list[str] = []

    class Counting(chunk_blocks.Scratch):
        def empty(self, role, like, *shape):
            before = self.buffers.get(role)
            buf = super().empty(role, like, *shape)
            if buf is not before:
                served.append(role)
            return buf

    monkeypatch.setattr(chunk_blocks, "Scratch", Counting)
    monkeypatch.setattr(chunk_blocks, "BLOCK_BYTES", 1)
    q, k, v, _ = (t.detach() for t in inputs(n=64, f=16, d=16))
    module = REGISTRY.get("linear.elu")(heads=3, d_head=16, chunk=8).double()
    module.cpu_kernel = False  # the stream, not the fused C kernel (tests/test_cpu_kernel.py)
    with torch.no_grad():
        module(q, k, v, causal=True)  # 4 blocks of 16
    assert sorted(served) == ["fk", "fq", "mem", "output", "scores", "x"]


def test_backward_uses_the_draw_of_its_forward():
    """FAVOR+ with `redraw`: a redraw between a forward and its backward (a second forward, say)
    does not change the gradients the first backward computes."""
    q, k, v, _ = (t.detach().requires_grad_() for t in inputs(n=24, f=16, d=16))
    torch.manual_seed(0)
    module = REGISTRY.get("linear.favor")(heads=3, d_head=16, m=8, redraw=True, chunk=8).double()
    out = module(q, k, v, causal=True)
    state = {n: t.clone() for n, t in module.state_dict().items()}
    module.feature_map.resample()
    got = torch.autograd.grad(out.sum(), (q, k))
    module.load_state_dict(state)
    module.eval()  # no redraw: the forward's projection
    want = torch.autograd.grad(module(q, k, v, causal=True).sum(), (q, k))
    for a, b in zip(got, want, strict=True):
        assert relative_error(a, b) < 1e-12


@functools.cache
def peak(name: str, params: tuple, n: int, mode: str) -> int:
    case = Case(name, params, 1, 8, n, 64, "float32", "cpu", True, mode)
    result = execute(case, MEMORY_ONLY)
    assert result.status == "ok", result.error
    return result.metrics["peak_mem_bytes"]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("linear.elu", ()),
        ("linear.identity", ()),
        ("linear.favor", ()),
        ("linear.t2r", (("norm", "sum"),)),
        ("linear.elu", (("rule", "delta"), ("norm", "attn"))),
        DELTA,
    ],
    ids=str,
)
def test_no_grad_forward_peak_is_within_twice_sdpa(name, params, n):
    """Only the output and one block's tensors live (the output alone is half SDPA's 2×)."""
    assert peak(name, params, n, "fwd") <= 2 * peak("softmax.sdpa", (), n, "fwd")


@pytest.mark.parametrize("n", LENGTHS)
def test_sum_rule_fwd_bwd_peak_is_within_sdpa(n):
    """Output and the three input gradients, plus checkpoints and one block: below SDPA's."""
    assert peak("linear.elu", (), n, "fwd+bwd") <= peak("softmax.sdpa", (), n, "fwd+bwd")


def test_delta_rule_fwd_bwd_peak_grows_linearly_and_stays_within_sdpa():
    """Recomputing states instead of storing them: doubling N at most ×2.1 (it was ×2 in the
    stored O(N) tensors plus autograd's per-chunk copies), and within SDPA's at N = 8192."""
    small, large = (peak(*DELTA, n, "fwd+bwd") for n in LENGTHS)
    assert large <= 2.1 * small, (small, large)
    assert large <= peak("softmax.sdpa", (), 8192, "fwd+bwd")

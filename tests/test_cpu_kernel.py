"""The fused CPU kernel for the causal sum rule (`attnbench.kernels.cpu_linear`, built by
`attnbench.kernels.native`): agreement with the float64 token-by-token form for each map and
normalisation, through the variants that use it; exact memory; the fall-back and the recorded
reason where it cannot be built or fails its self-check."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnbench.cases import Case
from attnbench.kernels import cpu_linear, native
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute
from attnbench.variants.linear import chunk_blocks, chunked

MAPS = [("linear.elu", "attn"), ("linear.elu", "sum"), ("linear.elu", "none"), ("linear.identity", "none")]


@pytest.fixture
def fresh_library(monkeypatch, tmp_path):
    """A cache folder of its own, and no library loaded yet in this process."""
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path))
    native._load.cache_clear()
    yield tmp_path
    native._load.cache_clear()


def qkv(n: int, d: int = 16, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, n, d, generator=gen, dtype=dtype) for _ in range(3)]


def no_stream(monkeypatch):
    """Fail the test if the eager stream runs: what follows must be the kernel's."""

    def fail(*args, **kwargs):
        raise AssertionError("the eager stream ran, not the kernel")

    monkeypatch.setattr("attnbench.variants.linear.chunked.stream", fail)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("n", "chunk"), [(45, 8), (64, 64), (130, 64), (7, 16)], ids=str)
@pytest.mark.parametrize(("name", "norm"), MAPS, ids=str)
def test_kernel_matches_the_float64_token_by_token_form(
    name, norm, n, chunk, threads, monkeypatch, one_thread
):
    """float64, through the variant, chunks of C with a shorter last one (or a single short
    one), rows split over one or two threads: equal to the recurrent form to rounding. (torch
    itself on one thread: its float64 recurrent form at two threads came out 4.3e-11 off in 3
    of 10 fresh processes here, where the kernel's answer never moved.)"""
    q, k, v = qkv(n)
    outs = {}
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    for form in ("recurrent", "chunk"):
        module = REGISTRY.get(name)(heads=3, d_head=16, form=form, chunk=chunk, norm=norm).double()
        if form == "chunk":
            no_stream(monkeypatch)
        with torch.no_grad():
            outs[form] = module(q, k, v, causal=True)
    assert relative_error(outs["chunk"], outs["recurrent"]) < 1e-12
    assert native.state().startswith("loaded ")


@pytest.mark.parametrize(("name", "norm"), MAPS, ids=str)
def test_kernel_in_float32_is_as_close_to_float64_as_the_eager_stream(name, norm):
    q, k, v = qkv(300, d=64, dtype=torch.float32)
    want = REGISTRY.get(name)(heads=3, d_head=64, form="parallel", norm=norm).double()
    with torch.no_grad():
        exact = want(q.double(), k.double(), v.double(), causal=True)
        errors = {}
        for kernel in (True, False):
            module = REGISTRY.get(name)(heads=3, d_head=64, norm=norm)
            module.cpu_kernel = kernel
            errors[kernel] = relative_error(module(q, k, v, causal=True).double(), exact)
    assert errors[True] < max(4 * errors[False], 1e-6), errors


@settings(max_examples=40, deadline=None)
@given(
    rows=st.tuples(st.integers(1, 2), st.integers(1, 3)),
    n=st.integers(1, 70),
    f=st.integers(1, 24),
    d=st.integers(1, 20),
    chunk=st.sampled_from([1, 2, 5, 16, 64, 100]),
    elementwise=st.sampled_from(sorted(cpu_linear.MAPS)),
    norm=st.sampled_from(["none", "attn", "sum"]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_torch_at_any_shape(rows, n, f, d, chunk, elementwise, norm, seed):
    """Any sizes (features ≠ values, chunk longer than the sequence, chunks of one token):
    equal in float64 to the masked quadratic form written in torch."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(*rows, n, f, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(*rows, n, d, generator=gen, dtype=torch.float64)
    if norm != "none" and elementwise == "identity":
        q, k = q.abs(), k.abs()  # both normalisations need non-negative features (as `check` says)
    kw = dict(elementwise=elementwise, sum_norm=norm == "sum", attn_norm=norm == "attn")
    got = cpu_linear.forward(q, k, v, chunk=chunk, **kw)
    assert relative_error(got, cpu_linear.reference(q, k, v, **kw)) < 1e-11


def test_two_threads_give_the_bits_of_one(monkeypatch):
    """Rows are independent: splitting them over threads changes no bit."""
    q, k, v = qkv(200, dtype=torch.float32)
    kw = dict(elementwise="elu", sum_norm=False, attn_norm=True, chunk=64)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = cpu_linear.forward(q, k, v, **kw)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert torch.equal(cpu_linear.forward(q, k, v, **kw), one)


def test_non_finite_inputs_give_what_the_eager_stream_gives():
    """NaN stays NaN and −inf gives φ = 0 (the exponential is the kernel's own)."""
    q, k, v = qkv(40, dtype=torch.float32)
    q[0, 0, 5, 3], k[0, 1, 7, 2], q[1, 2, 9] = float("nan"), float("-inf"), float("inf")
    outs = {}
    for kernel in (True, False):
        module = REGISTRY.get("linear.elu")(heads=3, d_head=16, chunk=8)
        module.cpu_kernel = kernel
        with torch.no_grad():
            outs[kernel] = module(q, k, v, causal=True)
    assert torch.equal(outs[True].isnan(), outs[False].isnan())
    finite = outs[False].isfinite()
    assert torch.allclose(outs[True][finite], outs[False][finite], rtol=1e-5, atol=1e-6)


def test_the_elu_exponential_is_within_float_rounding():
    """φ(x) = exp(x) for x ≤ 0, by the kernel's polynomial: within 2 ulp of float64's, down to
    where exp underflows."""
    x = torch.linspace(-87, 0, 20_001, dtype=torch.float32).view(1, -1, 1, 1)
    ones = torch.ones_like(x)
    # one token a row, its key 0 (φ = 1) and its value 1: the output is φ(q), exactly
    got = cpu_linear.forward(x, 0 * x, ones, elementwise="elu", sum_norm=False, attn_norm=False, chunk=1)
    want = x.double().exp()
    ulp = (torch.nextafter(want.float(), ones * 2) - want.float()).double()
    assert ((got.double() - want).abs() / ulp).max() <= 2


def test_no_grad_forward_peak_is_the_output_and_each_thread_s_scratch(monkeypatch):
    """Exact CPU bytes: nothing else lives (the eager stream's blocks are gone)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    settings = MeasureSettings(metrics=("memory",), calibrate=False, warmup=0)
    case = Case("linear.elu", (), 1, 8, 4096, 64, "float32", "cpu", True, "fwd", threads=1)
    result = execute(case, settings)
    assert result.status == "ok", result.error
    scratch = cpu_linear.scratch_floats(native.library(), 64, 64, 64) * 4
    assert result.metrics["peak_mem_bytes"] == 8 * 4096 * 64 * 4 + scratch


def test_a_variant_that_turns_it_off_runs_the_stream(monkeypatch):
    ran = []
    real = chunk_blocks.stream
    monkeypatch.setattr(
        "attnbench.variants.linear.chunked.stream", lambda *a, **kw: ran.append(1) or real(*a, **kw)
    )
    module = REGISTRY.get("linear.elu")(heads=3, d_head=16)
    module.cpu_kernel = False
    with torch.no_grad():
        module(*qkv(20), causal=True)
    assert ran


def test_turned_off_by_the_environment_falls_back_and_says_so(fresh_library, monkeypatch):
    monkeypatch.setenv(native.SWITCH_ENV, "0")
    q, k, v = qkv(30)
    module = REGISTRY.get("linear.elu")(heads=3, d_head=16, chunk=8).double()
    with torch.no_grad():
        got = module(q, k, v, causal=True)
    module.form = "recurrent"
    with torch.no_grad():
        assert relative_error(got, module(q, k, v, causal=True)) < 1e-12
    assert native.state() == f"unavailable: turned off by {native.SWITCH_ENV}"
    with pytest.raises(native.Unavailable):
        native.library()


def test_a_compiler_that_fails_is_reported_and_tried_again_by_the_next_process(fresh_library, monkeypatch):
    monkeypatch.setenv("CC", "false")
    with pytest.raises(native.Unavailable, match="did not compile"):
        native.library()
    assert native.state().startswith("unavailable: the C kernels did not compile")
    assert not list(fresh_library.glob("kernels/*/failed.txt"))  # not kept
    monkeypatch.setenv("CC", "no-such-compiler")
    native._load.cache_clear()
    with pytest.raises(native.Unavailable, match="no C compiler"):
        native.library()


def test_a_build_that_fails_its_self_check_is_never_loaded(fresh_library, monkeypatch):
    """The self-check runs in another process (a crash is a failure there, not here); its
    verdict is kept beside the build, so later processes do not load or rebuild it."""

    def disagree(target):
        raise native.Unavailable("the C kernels failed their self-check: elu: error 0.5")

    monkeypatch.setattr(native, "self_check", disagree)
    with pytest.raises(native.Unavailable, match="self-check"):
        native.library()
    (failed,) = fresh_library.glob("kernels/*/failed.txt")
    assert not list(fresh_library.glob("kernels/*/*.so"))
    monkeypatch.setattr(native, "build", lambda *a: pytest.fail("rebuilt"))
    native._load.cache_clear()
    with pytest.raises(native.Unavailable, match=r"error 0\.5"):
        native.library()
    assert "delete" in failed.read_text()


def test_the_self_check_fails_on_a_library_that_disagrees(monkeypatch):
    """`cpu_linear.self_check` passes on the real library and raises when the two answers
    differ by 1e-9."""
    lib = native.library()
    cpu_linear.self_check(lib._name)
    exact = cpu_linear.reference
    monkeypatch.setattr(cpu_linear, "reference", lambda *a, **kw: exact(*a, **kw) + 1e-9)
    with pytest.raises(AssertionError, match="error"):
        cpu_linear.self_check(lib._name)


def test_the_result_environment_names_the_kernel_state():
    case = Case("linear.elu", (), 1, 2, 64, 16, "float32", "cpu", True, "fwd", threads=1)
    result = execute(case, MeasureSettings(metrics=("time",), calibrate=False, warmup=0, min_run_time=0.01))
    assert result.env["cpu_kernels"].startswith("loaded ")


def test_the_kernel_is_a_named_range_in_a_profile():
    """`attnbench profile` lists it by name, with its time, not as time outside any operator."""
    module = REGISTRY.get("linear.elu")(heads=3, d_head=16)
    with torch.no_grad(), torch.profiler.profile() as prof:
        module(*qkv(200, dtype=torch.float32), causal=True)
    (event,) = [e for e in prof.key_averages() if e.key == cpu_linear.PROFILE_NAME]
    assert event.count == 1 and event.cpu_time_total > 0


@pytest.mark.parametrize(("name", "norm"), MAPS, ids=str)
def test_with_grad_the_kernel_s_forward_feeds_the_stream_s_backward(name, norm, monkeypatch, one_thread):
    """fwd+bwd in float64, with the forward patched so that only the kernel can run it (blocks
    of 16, segments of 32, N = 75): output and ∂q, ∂k, ∂v equal to the recurrent form's."""
    monkeypatch.setattr(chunk_blocks, "BLOCK_BYTES", 1)  # one power of two of chunks a block: 16
    q, k, v = (t.requires_grad_() for t in qkv(75))
    got = {}
    for form in ("recurrent", "chunk"):
        module = REGISTRY.get(name)(heads=3, d_head=16, form=form, chunk=8, norm=norm).double()
        if form == "chunk":
            no_stream(monkeypatch)
        out = module(q, k, v, causal=True)
        got[form] = (out, *torch.autograd.grad((out * out.detach().cos()).sum(), (q, k, v)))
    for a, b in zip(got["chunk"], got["recurrent"], strict=True):
        assert relative_error(a, b) < 1e-12


@pytest.mark.parametrize("norm", ["none", "attn", "sum"])
def test_the_checkpoints_and_denominators_are_the_stream_s(norm):
    """What the backward reads, from the kernel and from the stream: equal in float64."""
    q, k, v = qkv(100)
    kw = dict(elementwise="identity", sum_norm=norm == "sum", attn_norm=norm == "attn", chunk=8)
    q, k = (x.abs() for x in (q, k)) if norm != "none" else (q, k)
    phi = (lambda x: x / (x.sum(-1, keepdim=True) + cpu_linear.EPS)) if norm == "sum" else (lambda x: x)
    spec = chunked.Spec(False, norm == "attn", 8, phi=phi, block=16, segment=32)
    out, checkpoints, dens = cpu_linear.forward_for_backward(q, k, v, **kw, segment=32)
    want_out, want_checkpoints = torch.empty_like(v), []
    want_dens = chunk_blocks.stream(spec, q, k, v, None, want_out, want_checkpoints)
    assert relative_error(out, want_out) < 1e-12
    assert len(checkpoints) == len(want_checkpoints) == 4  # tokens 0, 32, 64, 96
    for a, b in zip(checkpoints, want_checkpoints, strict=True):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-12 * b.abs().max().clamp(min=1)
    assert (dens is None) == (want_dens is None)
    if dens is not None:
        assert relative_error(dens, want_dens) < 1e-12

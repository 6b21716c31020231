"""Positional schemes: the properties each paper states, and one bias through three paths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnbench.cases import Case
from attnbench.errors import Unsupported, UserError
from attnbench.measure.numerics import relative_error
from attnbench.measure.settings import MeasureSettings
from attnbench.positions import (
    SCHEMES,
    LearnedAbsolute,
    ShawRelative,
    T5Bias,
    alibi_bias,
    alibi_score_mod,
    alibi_slopes,
    check_pairing,
    rope,
    sinusoidal,
    t5_bucket,
    table_score_mod,
)
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute


def test_rope_preserves_norms_and_scores_depend_only_on_the_offset():
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 3, 50, 32, generator=gen, dtype=torch.float64) for _ in range(2))
    pos = torch.arange(50)
    assert torch.allclose(rope(q).norm(dim=-1), q.norm(dim=-1), atol=1e-12)
    # q at position m against k at position n, then both shifted by 37
    s1 = (rope(q, pos) * rope(k, pos.flip(0))).sum(-1)
    s2 = (rope(q, pos + 37) * rope(k, pos.flip(0) + 37)).sum(-1)
    assert torch.allclose(s1, s2, atol=1e-10)
    assert not torch.allclose(s1, (q * k).sum(-1), atol=1e-3)  # it does rotate


def test_alibi_slopes_follow_the_paper():
    assert torch.equal(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    assert torch.allclose(alibi_slopes(16), torch.tensor([2.0 ** (-i / 2) for i in range(1, 17)]))
    # not a power of two: the 4-head slopes, then every other one of the 8-head slopes
    assert torch.allclose(
        alibi_slopes(6), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3])
    )
    assert alibi_slopes(12).shape == (12,) and len(set(alibi_slopes(12).tolist())) == 12


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias(8, 10, 10)
    slopes = alibi_slopes(8)
    for i, j in [(0, 0), (5, 2), (9, 0), (7, 7)]:
        assert bias[:, i, j].tolist() == pytest.approx((-slopes * (i - j)).tolist())


@pytest.mark.parametrize("bidirectional", [False, True])
def test_t5_buckets_are_monotone_in_distance(bidirectional):
    distance = torch.arange(0, 1000)
    past = t5_bucket(-distance, bidirectional=bidirectional)  # keys before the query
    assert past[0] == 0 and (past[1:] >= past[:-1]).all()
    exact = 8 if bidirectional else 16  # half of each direction's buckets are exact distances
    assert past[-1] == past.max() and past[:exact].tolist() == list(range(exact))
    if bidirectional:
        future = t5_bucket(distance[1:], bidirectional=True)
        assert (future >= 16).all() and (future[1:] >= future[:-1]).all()


def test_embeddings():
    table = sinusoidal(100, 64)
    assert table.shape == (100, 64)
    assert torch.allclose(table[0, 0::2], torch.zeros(32)) and torch.allclose(table[0, 1::2], torch.ones(32))
    assert torch.allclose(table[10, 0], torch.tensor(math.sin(10.0)))
    learned = LearnedAbsolute(128, 16)
    assert learned(100).shape == (100, 16)
    with pytest.raises(Unsupported, match="128"):
        learned(129)


def test_bias_schemes_need_a_score_term():
    assert {s.applies for s in SCHEMES.values()} == {"none", "embedding", "rotation", "bias"}
    for name in ("alibi", "t5", "relative"):
        with pytest.raises(Unsupported):
            check_pairing(name, family="linear", takes_bias=False)
        check_pairing(name, family="softmax", takes_bias=True)
    check_pairing("rope", family="linear", takes_bias=False)
    with pytest.raises(UserError):
        check_pairing("xpos", family="softmax", takes_bias=True)


def naive_with_bias(q, k, v, bias):
    n = q.shape[-2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("scheme", ["alibi", "t5", "relative"])
def test_a_bias_gives_the_same_attention_through_naive_sdpa_and_flex(scheme):
    """The bias added to naive scores, passed to SDPA as a float attn_mask, and applied by a
    FlexAttention score_mod (compiled on CPU) give the same output."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    b, h, n, d = 1, 4, 128, 32
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    if scheme == "alibi":
        bias, score_mod = alibi_bias(h, n, n), alibi_score_mod(h)
    elif scheme == "t5":
        bias = T5Bias(h)(n, n).detach()
        score_mod = table_score_mod(bias)
    else:
        bias = ShawRelative(d, max_distance=16)(q, n).detach()
        score_mod = table_score_mod(bias)
    expected = naive_with_bias(q, k, v, bias)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    mask = bias.masked_fill(~causal, float("-inf"))
    assert relative_error(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), expected) < 1e-5
    block_mask = create_block_mask(lambda b_, h_, i, j: j <= i, None, None, n, n, device="cpu")
    flex = torch.compile(flex_attention, dynamic=False)
    assert relative_error(flex(q, k, v, score_mod=score_mod, block_mask=block_mask), expected) < 1e-5


EAGER_SOFTMAX = ["softmax.naive", "softmax.sdpa", "softmax.sdpa_math", "softmax.sdpa_flash"]


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("name", EAGER_SOFTMAX)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_softmax_variants_with_each_scheme_match_the_float64_oracle(name, scheme, causal):
    """Every scheme composes with every eager softmax path: outputs and gradients agree with
    the oracle applying the same scheme in float64 (learned tables copied)."""
    from attnbench import reference

    torch.manual_seed(0)
    module = REGISTRY.get(name)(heads=3, d_head=16, position=scheme)
    try:
        module.check(Case(name, (("position", scheme),), 2, 3, 70, 16, causal=causal, mode="fwd+bwd"))
    except Unsupported as e:
        pytest.skip(str(e))
    x = [torch.randn(2, 3, 70, 16, requires_grad=True) for _ in range(3)]
    x64 = [t.detach().double().requires_grad_(True) for t in x]
    out = module(*x, causal=causal)
    ref = reference.get("softmax")(*x64, causal=causal, **module.oracle_kwargs())
    assert relative_error(out, ref) < 1e-5
    g = torch.randn(ref.shape, dtype=torch.float64)
    got = torch.autograd.grad(out, x, g.float())
    want = torch.autograd.grad(ref, x64, g)
    for a, b in zip(got, want, strict=True):
        assert relative_error(a, b) < 1e-4


def test_flex_applies_alibi_as_a_score_mod():
    from attnbench import reference

    torch.manual_seed(0)
    module = REGISTRY.get("softmax.flex")(heads=4, d_head=32, position="alibi")
    q, k, v = (torch.randn(1, 4, 128, 32) for _ in range(3))
    ref = reference.get("softmax")(q, k, v, causal=True, **module.oracle_kwargs())
    assert relative_error(module(q, k, v, causal=True), ref) < 1e-5


def test_unsupported_pairings_are_recorded_not_raised():
    """A scheme a path cannot apply, or a learned table too short, becomes a status."""
    settings = MeasureSettings(metrics=("error",))
    for scheme in ("relative", "t5"):
        result = execute(Case("softmax.flex", (("position", scheme),), 1, 2, 64, 16, causal=True), settings)
        assert result.status == "unsupported" and "score_mod" in result.error
    learned = execute(
        Case("softmax.naive", (("position", "learned"),), 1, 2, 5000, 16, causal=True), settings
    )
    assert learned.status == "unsupported" and "4096" in learned.error
    ok = execute(Case("softmax.sdpa", (("position", "alibi"),), 1, 2, 300, 16, causal=True), settings)
    assert ok.status == "ok" and ok.metrics["rel_err"] < 1e-5


def test_sinusoids_from_an_offset_are_the_rows_of_the_full_table():
    from attnbench.positions import sinusoidal

    assert torch.equal(sinusoidal(3, 16, start=5), sinusoidal(8, 16)[5:])

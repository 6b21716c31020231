"""Decoding: every variant with a recurrent state or a cache gives, token by token, what its
parallel causal forward gives on the whole sequence; state sizes are exact."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.cases import Case, freeze
from attnbench.errors import Unsupported
from attnbench.registry import REGISTRY
from attnbench.variants.decode_state import KVCache, allocated_bytes, state_bytes

DECODERS = [v for v in REGISTRY.all() if v.decode_state and v.available("cpu")]
# parameter settings worth decoding under, per family (the defaults are one more)
SETTINGS = {
    "softmax": [{"position": p} for p in ("sinusoidal", "learned", "rope", "relative", "t5", "alibi")],
    "linear": [{"rule": "delta", "norm": "sum"}, {"norm": "attn"}, {"norm": "none"}],
    "sparse": [{"window": 5}],
    "memory": [{"segment": 5, "memory": 3}, {"segment": 4, "memory": 0}],
}


def qkv(n: int, *, seed: int = 0, batch: int = 2, heads: int = 2, d: int = 8):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, n, d, generator=gen, dtype=torch.float64) for _ in range(3)]


def settings_of(cls) -> list[dict]:
    return [{}] + [s for s in SETTINGS.get(cls.family, []) if set(s) <= set(cls.params)]


@pytest.mark.parametrize("cls", DECODERS, ids=lambda c: c.name)
@pytest.mark.parametrize("prompt", [0, 7])
@torch.no_grad()  # the cases a decode measures: no autograd (fused CPU kernels refuse a bias that needs one)
def test_decoding_token_by_token_matches_the_parallel_forward(cls, prompt):
    n, ran = 19, 0
    for params in settings_of(cls):
        torch.manual_seed(0)
        layer = cls(heads=2, d_head=8, **params).double().eval()
        q, k, v = qkv(n)
        case = Case(cls.name, freeze(params), 2, 2, n, 8, "float64", "cpu", causal=True)
        try:
            layer.check(case)
        except Unsupported:
            continue  # no float64 parallel form here under these parameters
        expected = layer(q, k, v, causal=True)
        outs = []
        if prompt:
            out, state = layer.prefill(q[:, :, :prompt], k[:, :, :prompt], v[:, :, :prompt])
            outs.append(out)
        else:
            state = layer.init_state(2, q.device, q.dtype)
        for t in range(prompt, n):
            out, state = layer.step(state, q[:, :, t], k[:, :, t], v[:, :, t])
            outs.append(out[:, :, None])
        got = torch.cat(outs, dim=2)
        ran += 1
        assert torch.allclose(got, expected, rtol=1e-9, atol=1e-11), (cls.name, params)
    if not ran:
        pytest.skip(f"{cls.name} has no float64 parallel form here to compare with")


def test_the_kv_cache_grows_by_exactly_one_token_of_keys_and_values_per_step():
    layer = REGISTRY.get("softmax.sdpa")(heads=4, d_head=16)
    state = layer.init_state(3, torch.device("cpu"), torch.float32)
    per_token = 2 * 3 * 4 * 16 * 4  # keys and values, B·H·D float32
    for t in range(1, 600):
        _, state = layer.step(state, *(x[:, :, 0].float() for x in qkv(1, batch=3, heads=4, d=16)))
        assert state_bytes(state) == t * per_token
    assert allocated_bytes(state) == 1024 * per_token  # 256 → 512 → 1024 token buffers


@pytest.mark.parametrize(
    "name, params", [("linear.elu", {}), ("linear.dpfp", {"rule": "delta", "norm": "sum"})]
)
def test_a_linear_state_has_the_same_bytes_at_every_length(name, params):
    layer = REGISTRY.get(name)(heads=2, d_head=8, **params)
    state = layer.init_state(2, torch.device("cpu"), torch.float32)
    d_dot = layer.d_dot()
    sizes = set()
    for _ in range(50):
        _, state = layer.step(state, *(x[:, :, 0].float() for x in qkv(1)))
        sizes.add(state_bytes(state))
    assert sizes == {(2 * 2 * d_dot * 8 + 2 * 2 * d_dot) * 4}  # W (F × D) and z (F) per head


def test_window_and_segment_states_stop_growing():
    local = REGISTRY.get("sparse.local")(heads=2, d_head=8, window=6)
    xl = REGISTRY.get("memory.xl")(heads=2, d_head=8, segment=4, memory=3)
    for layer, bound in ((local, 6), (xl, 4 + 3)):
        state = layer.init_state(2, torch.device("cpu"), torch.float64)
        sizes = []
        for _ in range(40):
            _, state = layer.step(state, *(x[:, :, 0] for x in qkv(1)))
            sizes.append(state_bytes(state))
        assert max(sizes) == bound * 2 * 2 * 2 * 8 * 8  # tokens · (k, v) · B · H · D · 8 bytes


def test_a_cache_buffer_keeps_what_was_written_when_it_grows():
    cache = KVCache(1, 1, 2, device="cpu", dtype=torch.float64, capacity=2)
    for t in range(5):
        cache.append(torch.full((1, 1, 1, 2), float(t)), torch.full((1, 1, 1, 2), -float(t)))
    assert cache.keys()[0, 0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert cache.values()[0, 0, :, 1].tolist() == [0, -1, -2, -3, -4]


def test_variants_without_a_decoding_form_say_so():
    for name in ("softmax.flex", "lowrank.nystrom", "memory.compressive"):
        layer = REGISTRY.get(name)(heads=2, d_head=8)
        with pytest.raises(Unsupported):
            layer.init_state(1, torch.device("cpu"), torch.float32)


def test_crossover_is_where_the_cheaper_variant_stays_cheaper():
    from attnbench.report.table import crossover

    softmax = {64: 1.0, 128: 2.0, 256: 4.0, 512: 8.0}
    assert crossover({64: 3.0, 128: 3.0, 256: 3.0, 512: 3.0}, softmax) == pytest.approx(
        128 * 2 ** (math.log(3 / 2) / math.log(2))
    )  # log-log between 128 (3 > 2) and 256 (3 < 4)
    assert crossover({n: 0.5 for n in softmax}, softmax) == 0
    assert crossover({n: 9.0 for n in softmax}, softmax) is None
    assert crossover({64: 0.5, 128: 3.0, 256: 3.0, 512: 9.0}, softmax) is None


def test_decode_suite_runs_and_shows_cost_state_and_crossover(tmp_path, capsys, drawn):
    from attnbench.cli import main
    from attnbench.results import load_results

    suite = tmp_path / "d.toml"
    suite.write_text(
        """
[suite]
description = "tiny decode"
[task]
name = "decode"
prompt = 4
output = 200
batch = [1, 2]
heads = 2
d_head = 8
[sweep]
variants = ["softmax.sdpa", "linear.elu", "sparse.local", "softmax.flex"]
threads = [1]
[params."sparse.local"]
window = 16
"""
    )
    out = tmp_path / "d.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline"]) == 0
    df = load_results(out)
    assert set(df.loc[df["variant"] == "softmax.flex", "status"]) == {"unsupported"}
    ok = df[df["status"] == "ok"]
    assert len(ok) == 6 and set(ok["mode"]) == {"decode"}
    points = {(r["variant"], r["task.batch"]): r["points"] for _, r in ok.iterrows()}
    assert [p["output_len"] for p in points[("softmax.sdpa", 2)]] == [64, 128, 200]
    per_token = 2 * 2 * 2 * 8 * 4  # k and v, B = 2, H = 2, D = 8, float32
    assert [p["state_bytes"] for p in points[("softmax.sdpa", 2)]] == [
        (4 + n) * per_token for n in (64, 128, 200)
    ]
    assert len({p["state_bytes"] for p in points[("linear.elu", 2)]}) == 1
    assert {p["state_bytes"] for p in points[("sparse.local", 2)]} == {16 * per_token}
    capsys.readouterr()
    plot = tmp_path / "d.png"
    assert main(["show", str(out), "--format", "md", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "T=64" in text and "T=200" in text and "cheaper than softmax.sdpa from T" in text
    (fig,) = drawn  # time per token on the left (with the legend), state bytes on the right
    left, right = fig["panels"]
    assert left["ylabel"] == "time per generated token, ms" and right["ylabel"] == "state or KV cache, MiB"
    assert len(left["legend"]) == 6 and "softmax.sdpa, B=2" in left["legend"] and right["legend"] == []
    assert left["lines"] == right["lines"] == 6 and left["xscale"] == right["yscale"] == "log"


@pytest.mark.parametrize(
    "variant, params, position",
    [
        ("softmax.sdpa", {"position": "rope"}, "none"),
        ("softmax.naive", {"position": "alibi"}, "sinusoidal"),
        ("linear.t2r", {"k": 8}, "learned"),
        ("linear.elu", {"rule": "delta", "norm": "sum"}, "none"),
        ("sparse.local", {"window": 4}, "none"),
        ("memory.xl", {"segment": 5, "memory": 3}, "none"),
    ],
)
def test_a_language_model_generates_the_logits_of_its_parallel_forward(variant, params, position):
    from attnbench.tasks.model import DecoderLM

    torch.manual_seed(0)
    make = lambda: REGISTRY.get(variant)(heads=2, d_head=8, **params)
    model = DecoderLM(
        make, vocab=256, d_model=16, layers=2, position=position, max_len=32, scale_embeddings=True
    )
    model = model.double().eval()
    tokens = torch.randint(256, (3, 17))
    with torch.no_grad():
        expected = model(tokens)
        states, steps = model.init_state(3), []
        for t in range(tokens.shape[1]):
            logits, states = model.step(states, tokens[:, t], t)
            steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), expected, rtol=1e-9, atol=1e-10)


GPU_DECODERS = [
    ("softmax.sdpa", {"position": "rope"}),
    ("linear.elu", {}),
    ("sparse.local", {"window": 5}),
    ("memory.xl", {"segment": 5, "memory": 3}),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name, params", GPU_DECODERS)
def test_decoding_on_gpu_matches_the_parallel_forward(name, params):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    layer = REGISTRY.get(name)(heads=2, d_head=8, **params).cuda().eval()
    q, k, v = (x.float().cuda() for x in qkv(19))
    with torch.no_grad():
        expected = layer(q, k, v, causal=True)
        out, state = layer.prefill(q[:, :, :7], k[:, :, :7], v[:, :, :7])
        outs = [out]
        for t in range(7, 19):
            out, state = layer.step(state, q[:, :, t], k[:, :, t], v[:, :, t])
            outs.append(out[:, :, None])
    assert torch.allclose(torch.cat(outs, 2), expected, rtol=1e-4, atol=1e-5)

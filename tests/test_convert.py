"""Swap-then-finetune: the swap keeps every non-attention weight, T2R's φ is per head, and the
task reports the four perplexities."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.cases import Case, freeze
from attnbench.registry import REGISTRY
from attnbench.tasks import get_task
from attnbench.tasks.convert import swap_attention
from attnbench.tasks.lm import VOCAB
from attnbench.tasks.model import DecoderLM


def lm(variant: str, **params) -> DecoderLM:
    make = lambda: REGISTRY.get(variant)(heads=2, d_head=8, **params)
    return DecoderLM(
        make, vocab=VOCAB, d_model=16, layers=2, position="learned", max_len=32, scale_embeddings=True
    )


def test_the_swap_keeps_every_non_attention_weight_bit_identical():
    torch.manual_seed(0)
    source = lm("softmax.sdpa", position="rope")
    target = swap_attention(source, lambda: REGISTRY.get("linear.t2r")(heads=2, d_head=8, k=4))
    before, after = source.state_dict(), target.state_dict()
    kept = [k for k in before if ".mix.attention." not in k]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert all(after[k].data_ptr() != before[k].data_ptr() for k in kept)  # copies, not shared
    new = [k for k in after if ".mix.attention." in k]
    assert sorted(new) == sorted(
        f"blocks.{i}.mix.attention.feature_map.{w}" for i in range(2) for w in ("weight", "bias")
    )
    tokens = torch.randint(256, (2, 20))
    assert target(tokens).shape == (2, 20, VOCAB)


def test_t2r_features_are_per_head_and_shared_by_queries_and_keys():
    layer = REGISTRY.get("linear.t2r")(heads=3, d_head=8, k=5)
    phi = layer.feature_map
    assert phi.weight.shape == (3, 5, 8) and phi.bias.shape == (3, 5)
    x = torch.randn(1, 1, 4, 8).expand(2, 3, 4, 8)  # the same vectors in every head
    out = phi(x)
    assert not torch.allclose(out[:, 0], out[:, 1])  # each head its own W, b
    expected = torch.relu(x[0, 1] @ phi.weight[1].T + phi.bias[1])
    assert torch.allclose(out[0, 1], expected)
    q, k = layer.features(x, x)
    assert torch.equal(q, k)  # one φ for queries and keys


def test_convert_reports_perplexity_before_after_finetuned_and_from_scratch(tmp_path):
    text = tmp_path / "t.txt"
    text.write_bytes(
        b"".join([b"the cat sat on the mat. ", b"a dog ran in the fog. "][i % 2] for i in range(400))
    )
    task = dict(
        corpus=str(text),
        seq_len=16,
        d_model=32,
        layers=1,
        heads=2,
        batch=8,
        train_tokens=128 * 40,
        finetune_tokens=128 * 20,
        eval_tokens=256,
        curve_tokens=128,
        eval_every=10,
        lr=1e-2,
        warmup=5,
    )
    convert = get_task("convert")
    case = Case(
        "linear.t2r",
        freeze({"k": 8}),
        causal=True,
        mode="fwd+bwd",
        threads=1,
        task=freeze({"name": "convert", **task}),
        **convert.shape(task),
    )
    row = convert.run(REGISTRY.get("linear.t2r"), case, convert.resolve_params(task))
    assert row["pretrain_steps"] == 40 and row["finetune_steps"] == 20 and row["scratch_steps"] == 60
    for key in ("ppl_source", "ppl_swapped", "ppl_finetuned", "ppl_scratch"):
        assert math.isfinite(row[key]) and 1 < row[key] < 256, (key, row[key])
    assert row["ppl_finetuned"] < row["ppl_swapped"]  # finetuning repairs the swap
    assert row["finetune_tokens_per_s"] > 0 and row["d_dot"] == 8
    again = convert.run(REGISTRY.get("linear.t2r"), case, convert.resolve_params(task))
    assert again["pretrain_checkpoint"] == "cached" and again["ppl_finetuned"] == row["ppl_finetuned"]


def test_convert_rejects_an_unknown_source():
    from attnbench.errors import UserError

    with pytest.raises(UserError, match="unknown variant"):
        get_task("convert").resolve_params({"source": "softmax.nope"})


def test_convert_table_puts_the_four_perplexities_side_by_side():
    import pandas as pd

    df = pd.DataFrame(
        [
            {
                "case_id": "a",
                "label": "linear.t2r",
                "status": "ok",
                "ppl_source": 4.2,
                "ppl_swapped": 90.0,
                "ppl_finetuned": 5.1,
                "ppl_scratch": 6.3,
                "finetune_tokens_per_s": 21000.0,
                "pretrain_steps": 977,
                "finetune_steps": 245,
                "scratch_steps": 1222,
            },
            {"case_id": "b", "label": "linear.favor", "status": "error"},
        ]
    )
    table = get_task("convert").table(df)
    row = table.iloc[0]
    assert (row["softmax source"], row["swapped"], row["finetuned"], row["from scratch"]) == (
        "4.20",
        "90.00",
        "5.10",
        "6.30",
    )
    assert row["steps (pretrain + finetune = scratch)"] == "977 + 245 = 1222"
    assert table.iloc[1]["status"] == "error"

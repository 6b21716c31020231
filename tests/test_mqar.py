"""MQAR (Zoology): the generator's rules, and a small model that learns it."""

from __future__ import annotations

import pytest
import torch

from attnbench.cases import Case, freeze
from attnbench.registry import REGISTRY
from attnbench.tasks import get_task
from attnbench.tasks.model import DecoderLM, ShortConv
from attnbench.tasks.mqar import IGNORE, power_law, sample_mqar
from attnbench.tasks.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mqar_examples_follow_the_rules():
    vocab, length, pairs = 64, 48, 6
    ex = sample_mqar(vocab, length, pairs, 50, torch.Generator().manual_seed(0))
    assert ex.inputs.shape == ex.targets.shape == (50, length)
    for row in range(50):
        tokens, targets = ex.inputs[row].tolist(), ex.targets[row].tolist()
        keys, values = tokens[0 : 2 * pairs : 2], tokens[1 : 2 * pairs : 2]
        assert all(1 <= k < vocab // 2 for k in keys) and len(set(keys)) == pairs
        assert all(vocab // 2 <= v < vocab for v in values) and len(set(values)) == pairs
        asked = [i for i, t in enumerate(targets) if t != IGNORE]
        assert len(asked) == pairs  # each key queried exactly once
        assert all(i >= 2 * pairs and (i - 2 * pairs) % 2 == 0 for i in asked)
        answer = dict(zip(keys, values, strict=True))
        assert sorted(tokens[i] for i in asked) == sorted(keys)
        assert all(targets[i] == answer[tokens[i]] for i in asked)


def test_mqar_gaps_follow_a_decreasing_power_law():
    p = power_law(100)
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=p.dtype))
    assert (p[1:] < p[:-1]).all()
    ex = sample_mqar(1024, 256, 4, 2000, torch.Generator().manual_seed(1))
    gaps = ((ex.targets != IGNORE).nonzero()[:, 1] - 8) // 2
    assert (gaps < 20).float().mean() > (gaps >= 100).float().mean()  # short gaps more likely


def test_mqar_same_seed_same_examples():
    a, b = (sample_mqar(128, 32, 4, 8, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


def test_model_learns_that_answers_are_the_contexts_values():
    """300 steps on vocabulary 512, L = 32, D = 4: accuracy at the query positions climbs from
    chance over the values (1/256) to ≈ 1/D, guessing among the values this context holds,
    which only reading the context gives. Recalling the right one (an induction-head circuit)
    takes thousands of steps: the mqar suite measures that."""
    mqar = get_task("mqar")
    task = dict(vocab=512, seq_len=32, pairs=4, d_model=64, lr=3e-3, max_steps=300, eval_examples=128)
    case = Case(
        "softmax.sdpa",
        (),
        causal=True,
        mode="fwd+bwd",
        threads=torch.get_num_threads(),
        task=freeze({"name": "mqar", **task}),
        **mqar.shape(task),
    )
    row = mqar.run(REGISTRY.get("softmax.sdpa"), case, mqar.resolve_params(task))
    assert row["loss_curve"][-1]["accuracy"] > 0.15, row["loss_curve"]
    assert row["loss_curve"][-1]["eval_loss"] < row["loss_curve"][0]["eval_loss"]


def test_zero_fill_leaves_only_the_pairs_and_the_queries():
    """Zoology's Fig. 2 (random_non_queries = False): every other position holds token 0."""
    ex = sample_mqar(64, 48, 6, 20, torch.Generator().manual_seed(2), fill="zero")
    asked = ex.targets != IGNORE
    rest = ex.inputs[:, 12:][~asked[:, 12:]]
    assert (rest == 0).all() and (ex.inputs[:, :12] > 0).all() and (ex.inputs[asked] > 0).all()


def test_short_convolution_is_causal_and_blocks_can_drop_the_mlp():
    torch.manual_seed(0)
    make = lambda: REGISTRY.get("softmax.sdpa")(heads=1, d_head=16)
    model = DecoderLM(make, vocab=32, d_model=16, layers=2, mlp_ratio=0, short_conv=3)
    assert all(block.mlp is None for block in model.blocks)
    conv = ShortConv(16, 3)
    x = torch.randn(2, 10, 16)
    y = x.clone()
    y[:, 6:] += 1.0  # change the future only
    assert torch.equal(conv(x)[:, :6], conv(y)[:, :6]) and not torch.equal(conv(x)[:, 6:8], conv(y)[:, 6:8])
    tokens = torch.randint(32, (2, 10))
    later = tokens.clone()
    later[:, 7:] = (later[:, 7:] + 1) % 32
    assert torch.allclose(model(tokens)[:, :7], model(later)[:, :7])


def test_a_run_stops_at_the_accuracy_threshold_and_records_the_best_accuracy():
    """Zoology's rule: stop once a held-out accuracy reaches 0.99 (here 0.9)."""
    model = torch.nn.Linear(1, 1)
    accuracies = iter([0.2, 0.95, 0.5, 0.99])
    config = TrainConfig(lr=1e-3, eval_every=1, patience=100, stop_loss=0.0, max_steps=10, stop_accuracy=0.9)
    result = train(model, lambda: model.weight.sum() ** 2, lambda: (1.0, next(accuracies)), config)
    assert result.stopped_by == "stop_accuracy" and result.steps == 2 and result.max_accuracy == 0.95

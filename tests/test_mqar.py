"""MQAR (Zoology): the generator's rules, and a small model that learns it."""

from __future__ import annotations

import torch

from attnbench.cases import Case, freeze
from attnbench.registry import REGISTRY
from attnbench.tasks import get_task
from attnbench.tasks.mqar import IGNORE, power_law, sample_mqar


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

"""The retrieval task (Schlag et al. 2021): data rules of both settings, determinism, and the
capacity and editing effects it exists to show (small, fixed seeds, margins that can fail)."""

from __future__ import annotations

import pytest
import torch

from attnbench.cases import Case, freeze
from attnbench.registry import REGISTRY
from attnbench.tasks import get_task
from attnbench.tasks.retrieval_data import (
    RetrievalModel,
    last_values,
    retrieval_loss,
    sample_batch,
    sample_eval,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_setting1_sequences_hold_every_key_once_and_the_target_is_its_value():
    batch = sample_batch(1, 12, 64, gen())
    assert batch.keys.shape == (64, 12)
    assert torch.equal(batch.keys.sort(-1).values, torch.arange(12).expand(64, 12))
    for row in range(64):
        (at,) = (batch.keys[row] == batch.query[row]).nonzero(as_tuple=True)
        assert batch.target[row] == batch.values[row, at.item()]


def test_setting2_target_is_the_value_of_the_last_occurrence():
    n_keys = 6
    batch = sample_batch(2, n_keys, 200, gen(1))
    assert batch.keys.shape == (200, 2 * n_keys)
    repeated = 0
    for row in range(200):
        keys, values = batch.keys[row].tolist(), batch.values[row].tolist()
        query = batch.query[row].item()
        assert query in keys
        last = max(i for i, k in enumerate(keys) if k == query)
        assert batch.target[row].item() == values[last]
        repeated += keys.count(query) > 1
    assert repeated > 50  # keys do repeat with new values: the task is editing


def test_last_values_marks_absent_keys():
    keys = torch.tensor([[0, 2, 0, 2]])
    values = torch.tensor([[5, 6, 7, 8]])
    assert last_values(keys, values, 4).tolist() == [[7, -1, 8, -1]]


@pytest.mark.parametrize("setting", [1, 2])
def test_evaluation_queries_every_key_each_sequence_holds(setting):
    data = sample_eval(setting, 8, 20, gen(2))
    rows = data.query.shape[0]
    if setting == 1:
        assert rows == 20 * 8
    present = {(tuple(k.tolist()), q.item()) for k, q in zip(data.keys, data.query, strict=True)}
    assert len(present) == rows  # no key queried twice in one sequence
    sequences = {tuple(k.tolist()) for k in data.keys}
    assert rows == sum(len(set(s)) for s in sequences)


@pytest.mark.parametrize("setting", [1, 2])
def test_one_seed_gives_the_same_batch_twice(setting):
    a, b, c = (sample_batch(setting, 10, 8, gen(s)) for s in (7, 7, 8))
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))
    assert not torch.equal(a.keys, c.keys)


def test_model_reads_at_the_last_position_after_every_write():
    """The readout equals attention of the query against all L written pairs (softmax naive,
    computed by hand): nothing after the last write, nothing missing."""
    torch.manual_seed(0)
    layer = REGISTRY.get("softmax.naive")(heads=1, d_head=8)
    model = RetrievalModel(layer, 5, 8).double()
    batch = sample_batch(1, 5, 3, gen(3))
    values = torch.nn.functional.one_hot(batch.values, 5).double()
    k = model.to_key(torch.cat([model.key_embedding(batch.keys), values], -1))
    q = model.to_query(model.key_embedding(batch.query))
    weights = torch.softmax((k @ q[:, :, None]).squeeze(-1) / 8**0.5, -1)
    expected = (weights[:, :, None] * values).sum(1)
    assert torch.allclose(model(batch), expected, atol=1e-12)


def test_loss_is_half_the_summed_squared_error():
    readout = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert retrieval_loss(readout, torch.tensor([0, 2])).item() == pytest.approx(0.5 * 0.5 / 2)


def run_case(variant: str, params: dict, **task) -> dict:
    retrieval = get_task("retrieval")
    p = retrieval.resolve_params(task)
    case = Case(
        variant,
        freeze(params),
        causal=True,
        mode="fwd+bwd",
        threads=torch.get_num_threads(),
        task=freeze({"name": "retrieval", **task}),
        **retrieval.shape(task),
    )
    return retrieval.run(REGISTRY.get(variant), case, p)


def test_linear_attention_stores_fewer_pairs_than_d_dot_and_fails_past_it():
    """ELU+1 with d_key = 16 has d_dot = 16: S = 4 reaches the stop loss; S = 32 stays far
    above it (the capacity limit), where softmax with the same d_key still reaches it."""
    small = run_case("linear.elu", {"norm": "sum"}, S=4, d_key=16, max_steps=3000)
    assert small["d_dot"] == 16
    assert small["stopped_by"] == "stop_loss" and small["best_loss"] <= 1e-3
    over = run_case("linear.elu", {"norm": "sum"}, S=32, d_key=16, max_steps=1500)
    assert over["best_loss"] > 0.05, over["best_loss"]
    soft = run_case("softmax.sdpa", {}, S=32, d_key=16, max_steps=3000)
    assert soft["stopped_by"] == "stop_loss" and soft["best_loss"] <= 1e-3


def test_delta_rule_learns_to_edit_where_the_sum_rule_cannot():
    """Setting 2, S = 8 (16 pairs, keys repeat), same layer size: the delta rule reaches a loss
    under 0.01; the sum rule, unable to overwrite, stays above 0.1."""
    delta = run_case("linear.elu", {"norm": "sum", "rule": "delta"}, setting=2, S=8, d_key=16, max_steps=2000)
    summed = run_case("linear.elu", {"norm": "sum", "rule": "sum"}, setting=2, S=8, d_key=16, max_steps=1500)
    assert delta["best_loss"] < 0.01, delta["best_loss"]
    assert summed["best_loss"] > 0.1, summed["best_loss"]


def test_result_row_holds_what_the_issue_names():
    row = run_case("linear.dpfp", {"nu": 2, "norm": "sum"}, S=4, d_key=8, max_steps=200, eval_every=100)
    assert row["d_dot"] == 2 * 8 * 2
    assert {"S", "setting", "d_key", "steps", "best_loss", "accuracy", "train_time_s", "loss_curve"} <= set(
        row
    )
    assert row["steps"] == 200 and [c["step"] for c in row["loss_curve"]] == [100, 200]
    assert 0.0 <= row["accuracy"] <= 1.0


def test_training_is_deterministic_on_cpu():
    a = run_case("linear.elu", {"norm": "sum"}, S=6, d_key=8, max_steps=200)
    b = run_case("linear.elu", {"norm": "sum"}, S=6, d_key=8, max_steps=200)
    assert a["loss_curve"] == b["loss_curve"]


def test_raising_max_steps_continues_the_same_run():
    """The seed ignores the stopping rule: the first 200 steps of a 300-step run are the
    200-step run; `seed` draws a different one."""
    short = run_case("linear.elu", {"norm": "sum"}, S=6, d_key=8, max_steps=200)
    longer = run_case("linear.elu", {"norm": "sum"}, S=6, d_key=8, max_steps=300, patience=50)
    other = run_case("linear.elu", {"norm": "sum"}, S=6, d_key=8, max_steps=200, seed=1)
    assert longer["loss_curve"][:2] == short["loss_curve"]
    assert other["loss_curve"] != short["loss_curve"]

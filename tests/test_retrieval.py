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
    key_counts,
    last_values,
    retrieval_loss,
    sample_batch,
    sample_eval,
)

pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_values_sampled_without_replacement_are_distinct_in_every_sequence():
    """The paper's setting 1: S values for S pairs, so each sequence's values are a permutation."""
    batch = sample_batch(1, 12, 64, gen(4), values_replace=False)
    assert torch.equal(batch.values.sort(-1).values, torch.arange(12).expand(64, 12))
    with_replacement = sample_batch(1, 12, 64, gen(4))
    assert any(len(set(row.tolist())) < 12 for row in with_replacement.values)


def test_queries_drawn_by_position_ask_a_repeated_key_more_often():
    """Setting 2: by key, every key a sequence holds is equally likely; by position (the
    paper's code), in proportion to how often it occurs."""
    keys = torch.tensor([[0, 0, 0, 1]]).expand(4000, 4)
    counts = key_counts(keys, 2)
    assert counts[0].tolist() == [3.0, 1.0]
    by_position = sample_batch(2, 4, 4000, gen(5), query_by="position")
    held = key_counts(by_position.keys, 4)
    asked = held.gather(1, by_position.query[:, None]).squeeze(1)
    by_key = sample_batch(2, 4, 4000, gen(5))
    asked_by_key = key_counts(by_key.keys, 4).gather(1, by_key.query[:, None]).squeeze(1)
    assert asked.mean() > asked_by_key.mean() + 0.2  # the queried key occurs more often


def test_evaluation_caps_the_queries_at_the_smallest_key_ids_and_can_use_s_pairs():
    data = sample_eval(1, 12, 5, gen(6), max_queries=4)
    assert data.query.shape[0] == 5 * 4 and set(data.query.tolist()) == {0, 1, 2, 3}
    short = sample_eval(2, 6, 5, gen(7), length=6)
    assert short.keys.shape[1] == 6  # setting 2 evaluated on S pairs, as the paper's code


@pytest.mark.parametrize(("variant", "family_init"), [("linear.elu", "uniform"), ("softmax.naive", "xavier")])
def test_the_papers_model_has_its_embedding_size_biases_and_initialisation(variant, family_init):
    torch.manual_seed(0)
    layer = REGISTRY.get(variant)(heads=1, d_head=16)
    model = RetrievalModel(layer, 20, 16, d_embed=44, bias=True, init="paper")
    assert model.key_embedding.weight.shape == (20, 44) and model.to_key.in_features == 44 + 20
    assert model.to_key.bias is not None and model.to_query.bias is not None
    bound = 16**-0.5 if family_init == "uniform" else (6 / (64 + 16)) ** 0.5  # Xavier: √(6/(fan_in+fan_out))
    assert model.to_key.weight.abs().max() <= bound
    assert model.to_key.weight.abs().max() > 0.9 * bound  # uniform over the whole range


def test_a_run_reports_the_loss_its_report_parameter_names():
    """The paper reports the last evaluation; the default the best. Both are recorded; the
    seed does not change with `report` (the same run, read differently)."""
    task = dict(S=6, d_key=8, max_steps=300, d_embed="2.2S", bias=True, init="paper", values_replace=False)
    last = run_case("linear.elu", {"norm": "attn"}, **task, report="last")
    best = run_case("linear.elu", {"norm": "attn"}, **task)
    assert last["d_embed"] == 13 and last["loss_curve"] == best["loss_curve"]
    assert last["loss"] == last["last_loss"] == last["loss_curve"][-1]["eval_loss"]
    assert best["loss"] == best["best_loss"] == min(c["eval_loss"] for c in best["loss_curve"])


def test_seeds_change_the_data_and_the_initialisation_and_a_seed_reproduces_exactly():
    """FAVOR+'s random features included: they come from the run's seed."""
    params = {"m": 8, "redraw": "always", "kernel": "exp"}
    a, b = (run_case("linear.favor", params, S=6, d_key=8, max_steps=100, seed=3) for _ in range(2))
    c = run_case("linear.favor", params, S=6, d_key=8, max_steps=100, seed=4)
    assert a["loss_curve"] == b["loss_curve"] and a["loss_curve"] != c["loss_curve"]
    retrieval = get_task("retrieval")
    case = Case("linear.favor", freeze(params), task=freeze({"name": "retrieval", "seed": 3}))
    seeds = [retrieval.run_seed(case, retrieval.resolve_params({"seed": s})) for s in (3, 4)]
    features = []
    for seed in seeds:
        torch.manual_seed(seed)
        features.append(REGISTRY.get("linear.favor")(heads=1, d_head=8, **params).feature_map.proj)
    assert not torch.equal(*features)
    first = [sample_batch(1, 6, 4, torch.Generator().manual_seed(s + 1)).values for s in seeds]
    assert not torch.equal(*first)

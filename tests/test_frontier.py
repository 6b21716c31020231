"""The speed–quality frontier: Pareto flags and the join of quality and cost."""

from __future__ import annotations

import pandas as pd

from attnbench.report.frontier import frontier_table, pareto


def test_pareto_keeps_what_nothing_beats():
    points = [
        {"capacity": 96, "tokens/s": 100.0},  # best quality
        {"capacity": 16, "tokens/s": 1000.0},  # fastest
        {"capacity": 16, "tokens/s": 500.0},  # beaten by the fastest on speed, equal quality
        {"capacity": 60, "tokens/s": 600.0},  # in between, beaten by neither
        {"ppl 1×": 4.0, "tokens/s": 5000.0},  # no quality in common with the others
    ]
    objectives = {"capacity": True, "ppl 1×": False, "tokens/s": True}
    assert pareto(points, objectives, ("capacity", "ppl 1×")) == [
        True,
        True,
        False,
        True,
        True,
    ]


def _row(label, variant, **kw):
    base = {"case_id": label + str(kw), "label": label, "variant": variant, "status": "ok", "params": ""}
    return {**base, **kw}


def test_frontier_joins_quality_and_cost_by_label_then_variant():
    rows = [
        _row(
            "softmax.sdpa",
            "softmax.sdpa",
            **{"task.name": "retrieval", "task.setting": 1, "task.S": s, "best_loss": 0.001},
        )
        for s in (8, 16)
    ]
    rows += [
        _row(
            "linear.elu[norm=sum]",
            "linear.elu",
            **{"task.name": "retrieval", "task.setting": 1, "task.S": s, "best_loss": loss},
        )
        for s, loss in ((8, 0.001), (16, 0.2))
    ]
    for label, variant, tps in (("softmax.sdpa", "softmax.sdpa", 1e5), ("linear.elu", "linear.elu", 4e5)):
        for n in (1024, 2048):
            cost = {"tokens_per_s": tps / n * 1024, "peak_mem_bytes": 2**20 * n / 1024}
            rows.append(_row(label, variant, seq_len=n, mode="fwd+bwd", causal=True, **cost))
    table = frontier_table(pd.DataFrame(rows)).set_index("label")
    assert table.attrs["shape"] == "causal fwd+bwd at N = 2048"
    assert table.loc["softmax.sdpa", "capacity"] == 16 and table.loc["linear.elu[norm=sum]", "capacity"] == 8
    assert table.loc["linear.elu[norm=sum]", "cost from"] == "linear.elu"  # priced by its variant
    assert table.loc["linear.elu[norm=sum]", "tokens/s"] == 2e5
    assert (table["Pareto"] == "★").all()  # one holds more, the other is faster

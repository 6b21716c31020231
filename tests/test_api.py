"""The Python API: `sweep` returns what `load_results` gives; `bench` measures an unregistered
function or module with the harness a registered variant gets; `plot` and `report` draw it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import attnbench
from attnbench.errors import UserError
from attnbench.registry import REGISTRY
from attnbench.results import load_results

SMALL = dict(heads=2, d_head=16, min_run_time=0.01)


def plain_softmax(q, k, v, causal=False):
    """softmax.naive's computation written as a user would, outside the registry."""
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))  # (B, H, N, N)
    if causal:
        n = q.shape[-2]
        scores.masked_fill_(torch.ones(n, n, dtype=torch.bool).triu_(1), float("-inf"))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def no_causal_keyword(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


class ScaledAttention(nn.Module):
    """A module with a parameter (learned output scale), built per case with its shape."""

    def __init__(self, heads: int, d_head: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(heads, 1, d_head))

    def forward(self, q, k, v, *, causal=False):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal) * self.scale


def test_sweep_returns_the_columns_load_results_gives(tmp_path):
    out = tmp_path / "r.jsonl"
    df = attnbench.sweep(["softmax.naive", "linear.elu"], seq_len=[32, 64], causal=True, output=out, **SMALL)
    assert list(df.columns) == list(load_results(out).columns)
    assert sorted(df["label"].unique()) == ["linear.elu", "softmax.naive"]
    assert set(df["seq_len"]) == {32, 64} and df["causal"].all() and (df["status"] == "ok").all()
    assert df["latency_ms"].gt(0).all() and df["peak_mem_bytes"].gt(0).all()


def test_sweep_errors_name_the_keyword():
    with pytest.raises(UserError, match=r"sweep\(seq_len=…\): seq_len must be a positive integer"):
        attnbench.sweep("softmax.naive", seq_len=0)
    with pytest.raises(UserError, match=r"sweep\(seqlen=…\): unknown sweep axis 'seqlen' \(did you mean"):
        attnbench.sweep("softmax.naive", seqlen=64)


def test_bench_of_a_plain_function_agrees_with_softmax_naive_and_its_peak_is_the_formula():
    b, h, n, d = 1, 2, 64, 16
    df = attnbench.bench(plain_softmax, "softmax.naive", seq_len=n, dtype="float64", causal=[False, True],
                         metrics="memory,error", reference="softmax", heads=h, d_head=d)  # fmt: skip
    assert (df["status"] == "ok").all(), df[["label", "error"]]
    assert set(df["label"]) == {"plain_softmax", "softmax.naive"}
    assert df["rel_err"].max() < 1e-14  # float64 against the float64 oracle, both
    peak = df.set_index(["label", "causal"])["peak_mem_bytes"]
    # scores and probabilities (B·H·N² each) live at once, then the output (B·H·N·D); the causal
    # softmax.naive also holds its N×N bool mask to the end, where the function drops it at once
    formula = 8 * (2 * b * h * n * n + b * h * n * d)
    assert (
        peak["plain_softmax", False] == peak["plain_softmax", True] == peak["softmax.naive", False] == formula
    )
    assert peak["softmax.naive", True] == formula + n * n
    assert "plain_softmax" not in REGISTRY.names()  # registered for the call only
    q, k, v = torch.randn(3, b, h, n, d, dtype=torch.float64)
    naive = REGISTRY.get("softmax.naive")(heads=h, d_head=d)
    torch.testing.assert_close(
        plain_softmax(q, k, v, causal=True), naive(q, k, v, causal=True), rtol=1e-14, atol=0
    )


def test_bench_measures_a_module_class_an_instance_and_a_function_without_causal():
    df = attnbench.bench(ScaledAttention, seq_len=32, causal=[False, True], mode=["fwd", "fwd+bwd"], **SMALL)
    assert (df["status"] == "ok").all() and set(df["label"]) == {"ScaledAttention"}
    module = ScaledAttention(2, 16)
    instance = attnbench.bench(module, name="mine", seq_len=32, dtype="float64", metrics="memory", **SMALL)
    assert list(instance["label"]) == ["mine"] and instance["peak_mem_bytes"].gt(0).all()
    assert module.scale.dtype == torch.float32  # each case measured a copy, cast to its dtype
    df = attnbench.bench(no_causal_keyword, seq_len=32, causal=[False, True], metrics="memory", **SMALL)
    status = dict(zip(df["causal"], df["status"], strict=True))
    assert status == {False: "ok", True: "unsupported"}
    assert "takes no `causal` keyword" in df.loc[df["causal"], "error"].item()


def test_bench_in_subprocess_workers_imports_the_function(tmp_path):
    df = attnbench.bench(plain_softmax, "softmax.naive", seq_len=32, executor="subprocess",
                         metrics="error", reference="softmax", **SMALL)  # fmt: skip
    assert (df["status"] == "ok").all(), df[["label", "error"]]
    assert df.set_index("label")["rel_err"].max() < 1e-5  # float32


def test_bench_in_subprocess_says_when_the_function_cannot_be_imported():
    def local_attention(q, k, v):
        return q

    with pytest.raises(
        UserError, match="local_attention is defined here, which a worker process cannot import"
    ):
        attnbench.bench(local_attention, executor="subprocess", seq_len=32, **SMALL)


def test_bench_of_an_unregistered_function_refuses_other_executors():
    with pytest.raises(UserError, match="runs inline or in a subprocess, not ray"):
        attnbench.bench(plain_softmax, executor="ray", seq_len=32, **SMALL)


def test_bench_refuses_a_name_that_is_a_registered_variant():
    with pytest.raises(UserError, match=r"'softmax\.sdpa' is already a variant name"):
        attnbench.bench(plain_softmax, name="softmax.sdpa", seq_len=32, **SMALL)


def test_plot_and_report_draw_the_results(tmp_path, drawn):
    df = attnbench.bench(plain_softmax, "softmax.naive", seq_len=[32, 64], metrics="memory", **SMALL)
    figure = attnbench.plot(df, "peak_mem_bytes", tmp_path / "mem.png")
    assert figure.stat().st_size > 0
    assert sorted(e.split(" ")[0] for e in drawn[0]["panels"][0]["legend"]) == [
        "plain_softmax",
        "softmax.naive",
    ]
    page = attnbench.report(df, tmp_path / "r.html", title="mine").read_text()
    assert "<title>mine</title>" in page and "plain_softmax" in page

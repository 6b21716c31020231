"""Profiles: a case's trace, its top operators and its memory timeline, written beside the
measurement they are checked against: the timeline's peak is the harness's exact peak, the
trace is JSON that names the operators, the breakdown adds up to the call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnbench.cases import Case, parse_label, variant_label
from attnbench.cli import main
from attnbench.errors import UserError
from attnbench.measure.memory_timeline import user_site
from attnbench.measure.settings import MeasureSettings
from attnbench.results.profiles import folder_name, load_profile
from attnbench.runner.execute import execute
from attnbench.suites import load_suite

NAIVE = Case("softmax.naive", (), 1, 2, 256, 32, causal=True, threads=1)
MATMULS = {"aten::bmm", "aten::mm", "aten::matmul", "aten::baddbmm"}


def profiled(case: Case, root: Path, **settings) -> dict:
    """The metrics of `case` measured and profiled into `root`."""
    quick = dict(metrics=("time", "memory"), min_run_time=0.02, min_samples=3, calibrate=False)
    chosen = {**quick, **settings, "profile": True, "profile_dir": str(root)}
    outcome = execute(case, MeasureSettings(**chosen))
    assert outcome.status == "ok", outcome.error
    assert "profile_error" not in outcome.metrics, outcome.metrics["profile_error"]
    return outcome.metrics


@pytest.fixture(scope="module")
def naive(tmp_path_factory):
    metrics = profiled(NAIVE, tmp_path_factory.mktemp("profiles"))
    return metrics, load_profile(metrics["profile"])


def test_profile_of_softmax_naive_has_its_matmuls_and_softmax_among_the_top_ops(naive):
    _, profile = naive
    top = set(profile.ops.nlargest(6, "self_ms")["op"])
    assert top & MATMULS, top
    assert top & {"aten::_softmax", "aten::softmax"}, top
    bmm = profile.ops.set_index("op").loc["aten::bmm"]
    assert bmm["calls"] == 2  # QKᵀ and PV, per call
    assert bmm["gflop"] == pytest.approx(2 * 2 * (2 * 256 * 256 * 32) / 1e9)  # the profiler's with_flops


def test_breakdown_shares_add_up_to_the_whole_call(naive):
    _, profile = naive
    assert profile.ops["share_pct"].sum() == pytest.approx(100, abs=0.5)
    assert "(outside any operator)" in set(profile.ops["op"])


def test_top_level_view_charges_each_of_the_calls_own_ops_with_all_under_it(naive):
    _, profile = naive
    top = profile.breakdown("top").set_index("op")
    assert top.loc["aten::matmul", "calls"] == 2  # the two matmuls the variant's Python makes
    by_op = profile.breakdown("op").set_index("op")
    assert top.loc["aten::matmul", "total_ms"] == pytest.approx(by_op.loc["aten::matmul", "total_ms"])
    assert "aten::bmm" not in top.index  # it runs inside the matmuls
    assert top["share_pct"].sum() == pytest.approx(100, abs=0.5)


def test_by_shape_view_splits_an_op_by_its_inputs(naive):
    _, profile = naive
    bmm = profile.breakdown("shape").query("op == 'aten::bmm'")
    assert sorted(bmm["input_shapes"]) == ["[[2, 256, 256], [2, 256, 32]]", "[[2, 256, 32], [2, 32, 256]]"]
    assert bmm["gflop"].tolist() == pytest.approx([2 * 2 * 256 * 256 * 32 / 1e9] * 2)


def test_trace_is_valid_json_that_names_the_ops_and_the_call(naive):
    _, profile = naive
    trace = json.loads((profile.folder / "trace.json").read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"attnbench.call", "aten::bmm", "aten::_softmax"} <= names
    bmm = next(e for e in trace["traceEvents"] if e.get("name") == "aten::bmm")
    assert bmm["args"]["Input Dims"] == [[2, 256, 32], [2, 32, 256]]  # CPU ops carry their shapes


def test_memory_timeline_peak_is_the_harness_exact_peak(naive):
    metrics, profile = naive
    memory = profile.summary["memory"]
    assert memory["peak_bytes"] == metrics["peak_mem_bytes"] == profile.memory["live"].max()
    # named: the N×N scores and probabilities, and the output, are what is live at the peak
    live = {(o["op"], o["site"]): (o["bytes"], o["tensors"]) for o in memory["live_at_peak"]}
    scores, output = 4 * 2 * 256 * 256, 4 * 2 * 256 * 32
    assert live[("aten::matmul", "softmax/naive.py:attend")] == (scores + output, 2)
    assert live[("aten::softmax", "softmax/naive.py:attend")] == (scores, 1)
    assert sum(n for n, _ in live.values()) == memory["peak_bytes"]


def test_profile_carries_the_measurement_it_is_checked_against(naive):
    metrics, profile = naive
    summary = profile.summary
    assert summary["case_id"] == NAIVE.id and profile.case == NAIVE
    assert summary["measured"]["latency_ms"] == metrics["latency_ms"]
    trace = summary["trace"]
    assert len(trace["walls_ms"]) == 3
    assert trace["ratio"] == pytest.approx(trace["wall_ms"] / metrics["latency_ms"])
    assert trace["within"] == (abs(trace["ratio"] - 1) <= trace["tolerance"])
    assert profile.folder.name == folder_name(NAIVE)
    assert folder_name(NAIVE) == "softmax.naive-B1-H2-N256-D32-float32-cpu-causal-fwd-t1"


def test_backward_memory_is_named_by_its_autograd_nodes(tmp_path):
    case = Case("softmax.naive", (), 1, 2, 128, 16, causal=True, mode="fwd+bwd", threads=1)
    metrics = profiled(case, tmp_path, metrics=("memory",))
    memory = load_profile(metrics["profile"]).summary["memory"]
    assert memory["peak_bytes"] == metrics["peak_mem_bytes"]
    assert memory["peak_op"].startswith("autograd::engine::evaluate_function: ")


def test_a_folder_name_has_no_shell_pattern_characters():
    case = Case("linear.dpfp", (("norm", "sum"), ("rule", "delta")), 1, 8, 8192, 64, causal=True, threads=2)
    assert folder_name(case) == "linear.dpfp_norm=sum,rule=delta-B1-H8-N8192-D64-float32-cpu-causal-fwd-t2"


@pytest.mark.parametrize(
    "frame, site",
    [
        ("/x/attnbench/variants/linear/forms.py(86): chunk_sum", "linear/forms.py:chunk_sum"),
        ("torch/nn/modules/module.py(1782): _call_impl", None),
        ("nn.Module: LinearElu_0", None),
        ("/x/attnbench/variants/linear/forms.py(93): <genexpr>", None),
    ],
)
def test_a_python_frame_names_user_code_only(frame, site):
    assert user_site(frame) == site


@pytest.mark.parametrize("params", [(), (("nu", 2), ("rule", "delta")), (("causal_mix", True), ("x", 0.5))])
def test_a_label_parses_back_to_its_variant_and_parameters(params):
    assert parse_label(variant_label("linear.dpfp", params)) == ("linear.dpfp", dict(params))


def test_suite_key_profile_takes_true_or_variant_patterns(tmp_path):
    def settings(value: str) -> MeasureSettings:
        path = tmp_path / "s.toml"
        path.write_text(f'[suite]\nprofile = {value}\n[sweep]\nvariants = ["softmax.naive"]\n')
        return load_suite(str(path)).settings

    assert settings("true").profiles("softmax.naive", "softmax.naive")
    assert not settings("false").profiles("softmax.naive", "softmax.naive")
    globbed = settings('"linear.*, softmax.sdpa"')
    assert globbed.profiles("linear.elu", "linear.elu[rule=delta]") and globbed.profiles("softmax.sdpa", "x")
    assert not globbed.profiles("softmax.naive", "softmax.naive")
    assert settings('"linear"').profiles("linear.favor", "linear.favor")  # a family
    with pytest.raises(UserError, match="profile has the wrong type"):
        settings("3")


# --- the commands ---------------------------------------------------------------------------
def test_profile_command_prints_the_top_ops_and_checks_the_peak(tmp_path, capsys):
    argv = ["profile", "softmax.naive", "--seq-len", "128", "--heads", "2", "--d-head", "32", "--causal"]
    argv += ["--threads", "1", "--min-run-time", "0.02", "-o", str(tmp_path), "--format", "md"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "aten::bmm" in out and "the measured peak, to the byte" in out
    folder = tmp_path / "softmax.naive-B1-H2-N128-D32-float32-cpu-causal-fwd-t1"
    assert {"trace.json", "ops.csv", "ops.json", "memory.csv", "memory.png", "profile.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert main(["profile", str(folder), "--by", "top", "--format", "csv"]) == 0  # printed again, not rerun
    again = capsys.readouterr().out
    assert again.startswith("op,calls,total ms,% of call\n") and "aten::matmul,2," in again


def test_profile_command_picks_a_case_from_results_by_id_or_label(tmp_path, capsys, monkeypatch):
    from attnbench.outcome import Outcome
    from attnbench.results.store import ResultStore, make_record

    store = ResultStore(tmp_path / "r.jsonl")
    cases = [Case("softmax.naive", (), 1, 2, n, 32, causal=True, threads=1) for n in (64, 128)]
    for case in cases:
        store.append(make_record(case, Outcome("ok"), "s"))
    picked = []

    def pick(case, settings):  # stands in for the measurement: the pick is what is checked
        picked.append(case)
        return Outcome("unsupported", "picked")

    monkeypatch.setattr("attnbench.runner.execute.execute", pick)
    results = str(tmp_path / "r.jsonl")
    assert main(["profile", cases[1].id[:8], "--results", results]) == 2
    assert main(["profile", "softmax.naive", "--results", results, "--seq-len", "64"]) == 2
    assert picked == [cases[1], cases[0]]
    assert main(["profile", "softmax.naive", "--results", results]) == 2
    assert "2 cases match 'softmax.naive': narrow with the shape flags" in capsys.readouterr().err
    assert picked == [cases[1], cases[0]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["softmax.nope"], "unknown variant 'softmax.nope'"),
        (["softmax.naive[window=3]"], "softmax.naive has no parameter 'window'"),
        (["linear.elu[rule=delta"], "a label's parameters end with ']'"),
        (["linear.elu[rule=delta]", "--no-causal"], "cannot run here: the delta rule is sequential"),
        (["softmax.naive", "--seq-len", "0"], "--seq-len must be a positive integer"),
    ],
)
def test_profile_command_user_errors_are_one_line(args, message, capsys, tmp_path):
    assert main(["profile", *args, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("attnbench: error:")


def test_run_profile_links_a_profile_from_each_selected_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(
        '[suite]\nmin_run_time_s = 0.02\nmetrics = ["time", "memory"]\ncalibrate = false\n'
        '[sweep]\nvariants = ["softmax.naive", "softmax.sdpa"]\nheads = [2]\nd_head = [32]\n'
        "seq_len = [64]\nthreads = [1]\n"
    )
    argv = ["run", "--suite", "s.toml", "--executor", "inline", "-o", "r.jsonl", "--profile", "softmax.naive"]
    assert main(argv) == 0
    records = {r["label"]: r for r in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())}
    linked = Path(records["softmax.naive"]["metrics"]["profile"])
    assert linked.parts[0] == "profiles" and (linked / "memory.png").is_file()
    assert "profile" not in records["softmax.sdpa"]["metrics"]
    argv = ["run", "--suite", "s.toml", "--executor", "inline", "-o", "q.jsonl", "--profile", "linear"]
    assert main(argv) == 2  # selects no case of the suite
    argv = ["run", "--suite", "editing", "--executor", "inline", "-o", "t.jsonl", "--profile"]
    assert main(argv) == 2  # a task suite trains models: nothing to profile


# --- CUDA ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_cuda_profile_names_kernels_and_its_peak_is_the_allocator_peak(tmp_path):
    case = Case("softmax.sdpa", (), 2, 8, 2048, 64, "bfloat16", "cuda", True, "fwd+bwd", threads=1)
    metrics = profiled(case, tmp_path)
    profile = load_profile(metrics["profile"])
    assert "(GPU idle)" in set(profile.ops["op"]) and len(profile.ops) > 2  # kernels, by device time
    trace = json.loads((profile.folder / "trace.json").read_text())
    assert any(e.get("cat") == "kernel" for e in trace["traceEvents"])
    memory = profile.summary["memory"]
    assert memory["peak_bytes"] == metrics["peak_mem_bytes"]
    assert (profile.folder / "memory_snapshot.pickle").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_cuda_profile_of_a_triton_kernel_names_it(tmp_path):
    case = Case("linear.elu@triton", (), 1, 4, 1024, 64, "bfloat16", "cuda", True, threads=1)
    metrics = profiled(case, tmp_path, metrics=("time",))
    kernels = set(load_profile(metrics["profile"]).ops["op"])
    assert any("_chunk" in k for k in kernels), kernels  # the Triton kernels' own names

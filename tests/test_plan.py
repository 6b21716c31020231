"""Cost before a run: --dry-run counts what the run will do, variants a family or glob selects
that cannot run here are skipped unless --all, --budget stops a run, a long estimate is said."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.measure.calibrate import Ceilings
from attnbench.measure.settings import MeasureSettings
from attnbench.runner import plan

SUITE = """
[suite]
min_run_time_s = 0.01
calibrate = false
metrics = ["time"]
[sweep]
variants = ["softmax.sdpa*", "linear.elu@triton"]
seq_len = [32]
heads = [2]
d_head = [16]
threads = [1]
causal = [false, true]
mode = ["fwd", "fwd+bwd"]
dtype = ["float32", "float16"]
"""


@pytest.fixture
def suite(tmp_path) -> Path:
    path = tmp_path / "mixed.toml"
    path.write_text(SUITE)
    return path


def statuses(path: Path) -> list[str]:
    return [json.loads(line)["status"] for line in path.read_text().splitlines()]


def test_the_dry_run_counts_what_the_run_does(suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()  # nothing ran
    total, runs, unsupported = map(
        int, re.search(r"(\d+) cases: (\d+) run here, (\d+) unsupported", text).groups()
    )
    assert "estimated" in text
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline"]) == 0
    got = statuses(out)
    assert len(got) == total
    assert got.count("unsupported") == unsupported and len(got) - got.count("unsupported") == runs
    assert unsupported > 0  # float16 SDPA on CPU in this torch, or the like: counted, with its reason


def test_a_resumed_dry_run_counts_only_what_is_left(suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline"]) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n")  # a run stopped after three cases
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "-o", str(out), "--resume", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"3 cases already done (--resume); {len(lines) - 3} cases:" in text


def test_a_family_or_glob_skips_what_cannot_run_here_unless_all(suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline", "--dry-run"]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped, cannot run here")]
    assert len(skipped) == 1 and "softmax.sdpa_cudnn" in skipped[0]  # once, with the reason
    assert "softmax.sdpa_cudnn" not in captured.out
    # named exactly in the suite: kept, and recorded unsupported with its reason
    assert "linear.elu@triton" in captured.out and "linear.elu@triton" not in skipped[0]
    assert main(["run", "--suite", str(suite), "-o", str(out), "--dry-run", "--all"]) == 0
    assert "softmax.sdpa_cudnn" in capsys.readouterr().out


def test_only_naming_an_unavailable_variant_keeps_it(suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = [
        "run",
        "--suite",
        str(suite),
        "-o",
        str(out),
        "--only",
        "softmax.sdpa_cudnn",
        "--executor",
        "inline",
    ]
    assert main(args) == 0
    assert set(statuses(out)) == {"unsupported"}


def test_budget_on_the_command_line_stops_the_run(tiny_suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--suite", str(tiny_suite), "-o", str(out), "--executor", "inline", "--budget", "1e-9"]
    assert main(args) == 0
    assert len(statuses(out)) < 4
    assert "time budget reached" in capsys.readouterr().out


def test_a_long_estimate_is_said_in_one_line_before_the_run(tiny_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plan, "LONG_RUN_S", -1.0)  # any estimate is long, in miniature
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(tiny_suite), "-o", str(out), "--executor", "inline"]) == 0
    lines = capsys.readouterr().err.splitlines()
    warning = [i for i, line in enumerate(lines) if line.startswith("warning: this run is estimated at")]
    announce = [i for i, line in enumerate(lines) if line.startswith("tiny: 4 cases")]
    assert warning and announce and warning[0] < announce[0]
    assert "--budget S" in lines[warning[0]] and "--dry-run" in lines[warning[0]]


def test_the_estimate_grows_with_the_flops_and_counts_every_call():
    ceil = Ceilings("cpu", "x", 1, matmul_flops={"float32": 1e10}, copy_bytes_per_s=1e10)
    settings = MeasureSettings(min_run_time=0.0, min_samples=7, warmup=2)
    short = plan.case_seconds(Case("softmax.sdpa", (), 1, 8, 1024, 64, threads=1), settings, ceil)
    long = plan.case_seconds(Case("softmax.sdpa", (), 1, 8, 4096, 64, threads=1), settings, ceil)
    call = 4 * 8 * 4096**2 * 64 / (1e10 * plan.EFFICIENCY)
    assert long == pytest.approx(plan.START_S + (1 + 2 + 2 + 7) * call)
    assert short < long
    assert plan.case_seconds(Case("softmax.sdpa", threads=1), settings, None) is None  # no calibration
    flex = plan.case_seconds(Case("softmax.flex", (), 1, 8, 4096, 64, threads=1), settings, ceil)
    assert flex == pytest.approx(long + plan.COMPILE_S)  # each new shape compiles


def test_earlier_results_of_the_same_case_on_this_host_give_its_estimate(tmp_path):
    rec = {"case_id": "abc", "status": "ok", "case": {"variant": "softmax.sdpa"}, "wall_s": 4.5,
           "env": {"hostname": "here"}}  # fmt: skip
    other = {**rec, "case_id": "def", "env": {"hostname": "elsewhere"}}
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(rec) + "\n" + json.dumps(other) + "\n")
    assert plan.earlier_seconds([path, tmp_path / "missing.jsonl"], "here") == {"abc": 4.5}

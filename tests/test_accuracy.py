"""The correctness gate: a variant computing other maths than its oracle is `inaccurate`, in
the record, in `show`, in the report and in `compare`; an approximation is not judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.measure import accuracy
from attnbench.measure.settings import MeasureSettings
from attnbench.results import load_results
from attnbench.runner.execute import execute

PLUGIN = Path(__file__).parent / "plugins" / "temperature_softmax.py"
SUITE = """
[suite]
min_run_time_s = 0.01
calibrate = false
[sweep]
variants = ["softmax.tempered"]
seq_len = [64]
heads = [2]
d_head = [16]
threads = [1]
mode = ["fwd+bwd"]
[params."softmax.tempered"]
matched = [false, true]
"""


@pytest.fixture(autouse=True)
def _plugin_left_behind(monkeypatch):
    """`--plugin` in this process registers softmax.tempered and names it in the environment
    for workers: undo both, so later tests' family sweeps do not meet it."""
    import sys

    from attnbench import discovery
    from attnbench.registry import PLUGINS_ENV, REGISTRY

    monkeypatch.setenv(PLUGINS_ENV, "")
    loaded = set(discovery._LOADED)
    yield
    REGISTRY.unregister("softmax.tempered")
    REGISTRY.unregister("softmax.tempered_own")
    discovery._LOADED.intersection_update(loaded)
    for name in ("temperature_softmax", "mine"):
        sys.modules.pop(name, None)


@pytest.fixture
def tempered_results(tmp_path) -> Path:
    suite = tmp_path / "tempered.toml"
    suite.write_text(SUITE)
    out = tmp_path / "r.jsonl"
    args = ["run", "--plugin", str(PLUGIN), "--suite", str(suite), "-o", str(out), "--executor", "inline"]
    assert main(args) == 0
    return out


def records(path: Path) -> dict[bool, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["case"]["params"]["matched"]: r for r in rows}


def test_a_variant_checked_against_the_wrong_oracle_is_inaccurate(tempered_results):
    rec = records(tempered_results)
    wrong, right = rec[False], rec[True]
    assert wrong["status"] == "inaccurate"
    assert "against the softmax oracle" in wrong["error"] and "output error" in wrong["error"]
    assert wrong["metrics"]["rel_err"] > 0.1 and "latency_ms" in wrong["metrics"]  # measured, kept
    assert right["status"] == "ok", right.get("error")  # oracle_kwargs hands the oracle its scale
    assert right["metrics"]["err_tolerance"]["grad_rel_err"] == accuracy.TOLERANCES["float32"][1]


def test_a_plugin_may_bring_its_own_oracle(tmp_path):
    suite = tmp_path / "own.toml"
    suite.write_text(SUITE.replace('"softmax.tempered"]', '"softmax.tempered_own"]').split("[params")[0])
    out = tmp_path / "r.jsonl"
    args = ["run", "--plugin", str(PLUGIN), "--suite", str(suite), "-o", str(out), "--executor", "inline"]
    assert main(args) == 0
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["status"] == "ok", rec.get("error")
    assert rec["metrics"]["err_vs"] == "tempered_softmax" and rec["metrics"]["rel_err"] < 1e-5


def test_show_marks_the_inaccurate_case(tempered_results, capsys):
    assert main(["show", str(tempered_results), "--plugin", str(PLUGIN)]) == 0
    out = capsys.readouterr().out
    assert "✗" in out and "1 inaccurate" in out


def test_compare_reports_a_case_that_became_inaccurate(tempered_results, tmp_path, capsys):
    lines = tempered_results.read_text().splitlines()
    base = tmp_path / "base.jsonl"  # the same cases, when the variant still matched its oracle
    base.write_text(
        "".join(json.dumps({**json.loads(x), "status": "ok", "error": None}) + "\n" for x in lines)
    )
    code = main(["compare", str(base), str(tempered_results), "--metrics", "status"])
    out = capsys.readouterr().out
    assert code != 0
    assert "inaccurate" in out


def test_an_approximation_is_not_judged_and_says_so():
    case = Case("lowrank.nystrom", (), 1, 2, 256, 16, "float32", "cpu", False, "fwd", threads=1)
    outcome = execute(case, MeasureSettings(min_run_time=0.01, calibrate=False))
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["rel_err"] > accuracy.TOLERANCES["float32"][0]  # far from softmax ...
    assert "err_tolerance" not in outcome.metrics  # ... and that is its result, not a fault
    assert outcome.metrics["err_vs"] == "softmax"


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"rel_err": 1e-7, "err_tolerance": {"rel_err": 1e-3}}, None),
        ({"rel_err": 0.3, "err_tolerance": {"rel_err": 1e-3}, "err_vs": "x"}, "output error 0.3 > 1e-03"),
        ({"rel_err": 1e-7, "grad_rel_err": 0.6, "err_tolerance": {"rel_err": 1e-3, "grad_rel_err": 1e-2}},
         "gradient error 0.6 > 1e-02"),
        ({"rel_err": None, "err_tolerance": {"rel_err": 1e-3}}, "not finite"),
        ({"rel_err": 0.9}, None),  # no tolerance recorded: an approximation
    ],
)  # fmt: skip
def test_the_verdict_reads_the_record(metrics, expected):
    got = accuracy.verdict(metrics)
    assert (got is None) if expected is None else (expected in got)


def test_non_finite_errors_become_null_so_the_record_stays_readable():
    metrics = {"rel_err": float("nan"), "grad_rel_err": float("inf"), "err_tolerance": {"rel_err": 1e-3}}
    accuracy.finite_errors(metrics)
    assert metrics["rel_err"] is None and metrics["grad_rel_err"] is None
    assert "not finite" in accuracy.verdict(metrics)


def test_load_results_keeps_the_inaccurate_status(tempered_results):
    df = load_results(tempered_results)
    assert sorted(df["status"]) == ["inaccurate", "ok"]


def test_a_plugin_given_as_a_relative_file_path_loads_in_the_workers_too(tmp_path):
    """`--plugin mine.py` from the folder it is in; the subprocess worker finds it too."""
    import shutil
    import subprocess
    import sys

    shutil.copy(PLUGIN, tmp_path / "mine.py")
    (tmp_path / "s.toml").write_text(SUITE.replace("matched = [false, true]", "matched = [true]"))
    run = [
        sys.executable,
        "-m",
        "attnbench",
        "run",
        "--plugin",
        "mine.py",
        "--suite",
        "s.toml",
        "-o",
        "r.jsonl",
    ]
    proc = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in map(json.loads, (tmp_path / "r.jsonl").read_text().splitlines())] == ["ok"]


def test_a_plugin_named_as_a_module_that_is_a_file_here_names_the_fix(tmp_path, user_error, monkeypatch):
    import shutil

    shutil.copy(PLUGIN, tmp_path / "mine.py")
    monkeypatch.chdir(tmp_path)
    line = user_error("list", "--plugin", "mine")
    assert line == "cannot import plugin 'mine': No module named 'mine' (it is a file here: --plugin mine.py)"

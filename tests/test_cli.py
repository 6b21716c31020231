"""The command line as a new user meets it: one line and exit 2 for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "attnbench", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unknown_suite_is_one_line_and_exit_2():
    assert "no suite 'nope'" in one_line_error(run_cli("run", "--suite", "nope"))


def test_broken_suite_file_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nvariants = ["softmax.naive"]\nseq_len = [0]\n')
    line = one_line_error(run_cli("run", "--suite", str(bad)))
    assert "bad.toml:3" in line and "seq_len" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (("run", "--suite", "ci", "--only", "softmax.nothing"), "no variant matches 'softmax.nothing'"),
        (("run", "--suite", "ci", "--executor", "ray-ish"), "invalid choice: 'ray-ish'"),
        (("show", "missing.jsonl"), "cannot read results file missing.jsonl"),
        (("list", "nothing.*"), "no variant matches 'nothing.*'"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
    ids=["only", "executor", "show-missing", "list", "command"],
)
def test_user_errors_are_one_line_naming_the_mistake(args, message):
    assert message in one_line_error(run_cli(*args))


def test_list_json_describes_every_variant():
    proc = run_cli("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    naive = next(r for r in rows if r["name"] == "softmax.naive")
    assert naive["available_cpu"] and naive["family"] == "softmax" and naive["decode_state"] == "cache"
    eff = next(r for r in rows if r["name"] == "softmax.sdpa_efficient")
    assert not eff["available_cpu"] and eff["reason_cpu"]


def test_list_table_shows_reasons():
    proc = run_cli("list", "softmax.sdpa_*")
    assert proc.returncode == 0 and "softmax.sdpa_efficient" in proc.stdout and "no:" in proc.stdout


def test_run_writes_results_and_prints_a_table_then_show_exports(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        '[suite]\ndescription = "tiny"\nmin_run_time_s = 0.05\ncalibrate = false\n'
        '[sweep]\nvariants = ["softmax.naive", "softmax.sdpa_math"]\nseq_len = [32, 64]\n'
        "heads = [2]\nd_head = [16]\nthreads = [1]\n"
    )
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(suite), "-o", str(out), "--executor", "inline"]) == 0
    printed = capsys.readouterr().out
    assert "softmax.naive" in printed and "N=64" in printed
    assert len(out.read_text().splitlines()) == 4

    assert main(["show", str(out), "--format", "csv", "--metric", "peak_mem_bytes"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0] == "label,N=32,N=64" and len(csv) == 3
    assert main(["show", str(out), "--format", "md"]) == 0
    assert "| softmax.naive" in capsys.readouterr().out


def test_show_skips_corrupt_lines_with_a_warning_and_keeps_the_rest(tmp_path, capsys):
    good = {
        "case_id": "a",
        "status": "ok",
        "label": "softmax.naive",
        "flags": [],
        "case": {"variant": "softmax.naive", "seq_len": 64, "params": {}},
        "metrics": {"latency_ms": 1.5},
    }
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps(good)
        + "\n{not json\n"
        + '{"unrelated": 1}\n'
        + json.dumps({**good, "case_id": "b", "case": {**good["case"], "seq_len": 128}})[:-9]
    )
    assert main(["show", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1.5" in captured.out
    assert "r.jsonl:2" in captured.err and "r.jsonl:3" in captured.err and "r.jsonl:4" in captured.err


def test_bad_metric_is_a_user_error_naming_the_metrics(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    suite = tmp_path / "tiny.toml"
    suite.write_text('[suite]\nmetrics = ["memory"]\n[sweep]\nvariants = ["softmax.naive"]\nseq_len = [32]\n')
    assert main(["run", "--suite", str(suite), "-o", str(path), "--executor", "inline"]) == 0
    capsys.readouterr()
    assert main(["show", str(path), "--metric", "speed"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnbench: error: unknown metric 'speed'") and "latency_ms" in err


@pytest.fixture
def tiny_results(tmp_path, tiny_suite) -> Path:
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(tiny_suite), "-o", str(out), "--executor", "inline"]) == 0
    return out


def test_report_to_an_unwritable_path_is_one_line(tiny_results, tmp_path, user_error):
    assert (
        user_error("report", tiny_results, "-o", tmp_path)
        == f"cannot write the report {tmp_path}: Is a directory"
    )
    (tmp_path / "afile").write_text("")
    line = user_error("report", tiny_results, "-o", tmp_path / "afile" / "r.html")
    assert line.startswith(f"cannot write the report {tmp_path}/afile/r.html: ")


@pytest.mark.parametrize("command", ["show", "report"])
def test_an_empty_results_file_is_called_empty_not_blamed_on_where(tmp_path, user_error, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert user_error(command, empty) == f"{empty} holds no results"


def test_show_plot_to_an_unknown_format_is_refused_before_drawing(tiny_results, tmp_path, user_error):
    line = user_error("show", tiny_results, "--plot", tmp_path / "x.xyz")
    assert (
        line.startswith(f"--plot {tmp_path}/x.xyz: no figure format '.xyz'; end it in one of ")
        and ".png" in line
    )
    assert not (tmp_path / "x.xyz").exists()


def test_an_empty_shard_is_blamed_on_the_shard_not_on_only(tmp_path, tiny_suite, user_error):
    line = user_error("run", "--suite", tiny_suite, "--shard", "5/8", "-o", tmp_path / "r.jsonl")
    assert line == "--shard 5/8: shard 5 is empty, the sweep has only 4 cases"


def test_a_large_sweep_says_how_many_cases_before_starting(tmp_path, tiny_suite, capsys, monkeypatch):
    from attnbench.runner import sweep

    monkeypatch.setattr(sweep, "LARGE_SWEEP", 3)  # a sweep of 320,000 cases, in miniature
    out = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(tiny_suite), "-o", str(out), "--executor", "inline"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"tiny: 4 cases → {out}  (executor inline)"
    assert err[1].startswith("warning: 4 cases to run is a long sweep (hours, at a second a case): narrow it")


def test_python_warnings_during_a_command_print_as_one_line(tiny_results, capsys, monkeypatch):
    import warnings

    from attnbench.commands import show

    real = show.task_name

    def noisy(df):
        warnings.warn("something a library says\nover two lines", RuntimeWarning, stacklevel=1)
        return real(df)

    monkeypatch.setattr(show, "task_name", noisy)
    capsys.readouterr()
    assert main(["show", str(tiny_results)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: something a library says (RuntimeWarning)"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--timeout", "-3", "argument --timeout: '-3' is not above 0"),
        ("--timeout", "0", "argument --timeout: '0' is not above 0"),
        ("--timeout", "nan", "argument --timeout: 'nan' is not a finite number"),
        ("--mem-limit", "-1", "argument --mem-limit: '-1' is negative (0 means no limit)"),
    ],
)
def test_timeout_and_mem_limit_out_of_range_are_refused_when_parsed(
    tmp_path, tiny_suite, user_error, flag, value, message
):
    line = user_error("run", "--suite", tiny_suite, "-o", tmp_path / "r.jsonl", flag, value)
    assert line == f"{message} (see attnbench run --help)"
    assert not (tmp_path / "r.jsonl").exists()

"""`attnbench run VARIANT… --seq-len …`: an ad-hoc suite from the flags, checked as a suite file is,
with the same cases as the equivalent file (`--save-suite` writes it)."""

from __future__ import annotations

import json
import sys

import pytest

from attnbench.adhoc import build_suite, cli_origin, params_from_flags, suite_tables, to_toml
from attnbench.cli import main
from attnbench.suites import load_suite

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAST = ("--min-run-time", "0.01", "--executor", "inline")
SHAPE = ("--heads", "2", "--d-head", "16", "--seq-len", "32", "64")


def records(path):
    return {(r["case_id"], r["status"]) for r in map(json.loads, path.read_text().splitlines())}


def test_an_adhoc_run_gives_the_cases_and_statuses_of_its_saved_suite(tmp_path, capsys):
    saved, adhoc, again = tmp_path / "mine.toml", tmp_path / "adhoc.jsonl", tmp_path / "suite.jsonl"
    flags = (*SHAPE, "--causal", "both", "--mode", "fwd", "fwd+bwd", "--metrics", "memory,error")
    # softmax.sdpa_flash has no fwd+bwd on every build: whatever its statuses, they must match
    assert main(["run", "softmax.naive", "linear.dpfp", *flags, "--param", "linear.dpfp:nu=1,2",
                 *FAST, "-o", str(adhoc), "--save-suite", str(saved)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "linear.dpfp[nu=2]" in out and "softmax.naive" in out and f"results: {adhoc}" in out
    assert main(["run", "--suite", str(saved), "--executor", "inline", "-o", str(again)]) == 0
    first, second = records(adhoc), records(again)
    assert first == second
    assert len(first) == 3 * 2 * 2 * 2  # (naive, dpfp nu=1, nu=2) × N × causal × mode
    assert all(status == "ok" for _, status in first)


def test_the_saved_suite_round_trips_to_the_same_tables():
    tables = suite_tables(
        ["softmax.*", "linear.dpfp"],
        {"seq_len": [128, 256], "causal": [False, True], "dtype": "float64", "mode": None},
        params={"linear.dpfp": {"nu": [1, 3], "rule": ["delta"]}, "sparse.*": {"window": 16}},
        meta={"metrics": ["time"], "min_run_time_s": 0.25, "timeout_s": None},
        description='a "quoted" description',
    )
    assert tomllib.loads(to_toml(tables)) == tables
    suite = build_suite(tables, origin=cli_origin(tables))
    assert suite.settings.metrics == ("time",) and suite.settings.min_run_time == 0.25


def test_saved_suite_cases_equal_the_adhoc_suite_cases(tmp_path):
    params = params_from_flags(["linear.dpfp:nu=1,2", "linear.dpfp:rule=sum,delta"])
    tables = suite_tables(["linear.dpfp", "softmax"], {"seq_len": [64, 128], "causal": [True]}, params=params)
    (tmp_path / "s.toml").write_text(to_toml(tables))
    adhoc = build_suite(tables, origin=cli_origin(tables)).cases()
    assert [c.id for c in adhoc] == [c.id for c in load_suite(str(tmp_path / "s.toml")).cases()]
    assert {c.param_dict.get("nu") for c in adhoc} == {None, 1, 2}


@pytest.mark.parametrize(
    "args, message",
    [
        (("softmax.naive", "--seq-len", "0"), "--seq-len: seq_len must be a positive integer, got 0"),
        (("softmax.naive", "--seq-len", "x"), "--seq-len: invalid int value: 'x'"),
        (("softmax.naive", "--dtype", "float8"), "--dtype: bad dtype 'float8' (choose from float32"),
        (("softmax.naive", "--mode", "bwd"), "--mode: bad mode 'bwd' (choose from fwd, fwd+bwd"),
        (("softmax.naive", "--causal", "maybe"), "--causal: invalid choice: 'maybe'"),
        (("softmax.sdpx",), "VARIANT: no variant matches 'softmax.sdpx' (did you mean"),
        (("linear.dpfp", "--param", "linear.dpfp:nu=0"), "--param linear.dpfp:nu: linear.dpfp: nu must be"),
        (("linear.dpfp", "--param", "linear.dpfp:zeta=1"), "--param linear.dpfp:zeta: "),
        (("linear.dpfp", "--param", "nu=1"), "--param 'nu=1': expected NAME:KEY=V1,V2"),
        (("softmax.naive", "--metrics", "speed"), "--metrics: unknown metric group 'speed'"),
        (("softmax.naive", "--min-run-time", "-1"), "--min-run-time: [suite] min_run_time_s must be"),
        (("softmax.naive", "--suite", "ci"), "give --suite or VARIANT…, not both"),
        (("--suite", "ci", "--seq-len", "64"), "--seq-len is for an ad-hoc run (VARIANT…)"),
        ((), "say what to run: VARIANT…"),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("-") else None,
)
def test_flag_errors_are_one_line_naming_the_flag(user_error, args, message):
    assert message in user_error("run", *args)


def test_save_suite_to_an_unwritable_path_is_one_line(user_error, tmp_path):
    line = user_error("run", "softmax.naive", "--save-suite", tmp_path / "no" / "such" / "dir.toml")
    assert "--save-suite" in line and "No such file or directory" in line

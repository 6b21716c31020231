"""Replicates: each (case, round) one record, shuffled rounds, one row per case with the
interval of its median and of its ratio to the reference paired by round, `--resume`
exact, and tasks and untimed suites run once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.results import load_results
from attnbench.results.store import make_record
from attnbench.runner.rounds import Rounds, order, repeats, with_repeat
from attnbench.runner.sweep import run_sweep
from attnbench.suites import load_suite


def case(variant: str, n: int = 64) -> Case:
    return Case(variant, (), 1, 2, n, 16, "float32", "cpu", True, "fwd", 1)


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def replicate(variant: str, round_: int, ms: float, status: str = "ok") -> dict:
    metrics = (
        {"latency_ms": ms, "latency_iqr_ms": 0.01 * ms, "tokens_per_s": 64 / ms * 1e3}
        if status == "ok"
        else {}
    )
    return make_record(
        case(variant), Outcome(status, None, metrics, ["noisy"] if round_ == 1 else []), "s", round_=round_
    )


def test_rounds_are_shuffled_seeded_and_hold_every_pair_once():
    cases = [case("softmax.naive", n) for n in (32, 48, 64, 80, 96, 112)]
    plan = Rounds(cases, 3)
    todo = plan.todo()
    assert sorted((r, c.id) for r, c in todo) == sorted((r, c.id) for r in range(3) for c in cases)
    assert [r for r, _ in todo] == sorted(r for r, _ in todo)  # round by round
    orders = [[c.id for c in order(cases, r, 3)] for r in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # shuffled differently per round
    assert orders == [[c.id for c in order(cases, r, 3)] for r in range(3)]  # the same every time
    assert order(cases, 0, 1) == cases  # no replicates: the suite's order


def test_resume_skips_finished_pairs_and_later_rounds_of_a_failed_case():
    ok, bad = case("softmax.naive"), case("softmax.sdpa")
    plan = Rounds([ok, bad], 3)
    plan.note_records(
        [
            {"case_id": ok.id, "round": 0, "status": "ok"},
            {"case_id": bad.id, "status": "oom"},  # written without a round: round 0
        ]
    )
    todo = plan.todo()
    assert (0, ok) not in todo and (0, bad) not in todo and len(todo) == 4
    assert [plan.skip(c, r) for r, c in todo if c == bad] == [True, True]
    assert not any(plan.skip(c, r) for r, c in todo if c == ok)


def test_a_cases_rounds_read_as_one_row_with_its_interval(tmp_path):
    records = [replicate("softmax.naive", r, ms) for r, ms in enumerate([2.0, 2.4, 1.9, 2.1, 2.2])]
    df = load_results(write(tmp_path / "r.jsonl", records))
    assert len(df) == 1
    row = df.iloc[0]
    assert row["replicates"] == 5 and row["latency_replicates_ms"] == [2.0, 2.4, 1.9, 2.1, 2.2]
    assert row["replicate_rounds"] == [0, 1, 2, 3, 4]
    assert row["latency_ms"] == 2.1  # the median of the medians
    assert 1.9 <= row["latency_ci_lo_ms"] <= 2.1 <= row["latency_ci_hi_ms"] <= 2.4
    assert row["tokens_per_s"] == pytest.approx(64 / 2.1 * 1e3)  # other numbers: their median
    assert row["flags"] == "noisy"  # any replicate's flag
    assert row["status"] == "ok"


def test_the_ratio_to_the_reference_pairs_replicates_by_round(tmp_path):
    """Each round the machine is slower or faster, on both variants alike: paired by round
    the ratio is exactly 2 every time, so its interval is [2, 2]."""
    drift = [1.0, 1.8, 0.7, 1.3]
    records = [replicate("softmax.sdpa", r, 1.0 * d) for r, d in enumerate(drift)]
    records += [replicate("softmax.naive", r, 2.0 * d) for r, d in enumerate(drift)]
    df = load_results(write(tmp_path / "r.jsonl", records)).set_index("label")
    naive = df.loc["softmax.naive"]
    assert naive["ratio_ref"] == pytest.approx(2.0)
    assert naive["ratio_ref_ci_lo"] == pytest.approx(2.0) and naive["ratio_ref_ci_hi"] == pytest.approx(2.0)
    assert naive["latency_ci_hi_ms"] - naive["latency_ci_lo_ms"] > 0.5  # the latency alone drifts


def test_the_last_record_of_a_round_wins_and_a_failed_round_fails_the_case(tmp_path):
    records = [replicate("softmax.naive", 0, 5.0), replicate("softmax.naive", 0, 2.0)]
    records += [replicate("softmax.naive", 1, 2.2), replicate("softmax.naive", 2, 0, status="timeout")]
    row = load_results(write(tmp_path / "r.jsonl", records)).iloc[0]
    assert row["latency_replicates_ms"] == [2.0, 2.2]
    assert row["status"] == "timeout"


def test_a_single_record_reads_as_before_without_an_interval(tmp_path):
    record = make_record(case("softmax.naive"), Outcome("ok", None, {"latency_ms": 1.0}), "s")
    df = load_results(write(tmp_path / "r.jsonl", [record]))
    assert "round" not in record
    assert "latency_ci_lo_ms" not in df and "replicates" not in df


def test_a_sweep_with_replicates_resumes_exactly(tmp_path, tiny_suite):
    """Run 4 cases × 3 rounds; drop all but the first 5 records (a kill); resume: every
    (case, round) exactly once, the kept ones untouched."""
    tiny_suite.write_text(tiny_suite.read_text().replace("[suite]\n", "[suite]\nrepeat = 3\n"))
    suite = load_suite(str(tiny_suite))
    out = tmp_path / "r.jsonl"
    run_sweep(suite, suite.cases(), out=out, executor="inline")
    lines = out.read_text().splitlines()
    assert len(lines) == 12
    pairs = [(json.loads(line)["case_id"], json.loads(line)["round"]) for line in lines]
    assert len(set(pairs)) == 12 and {r for _, r in pairs} == {0, 1, 2}
    out.write_text("\n".join(lines[:5]) + "\n")
    outcome = run_sweep(suite, suite.cases(), out=out, resume=True, executor="inline")
    again = out.read_text().splitlines()
    assert again[:5] == lines[:5] and outcome.already_done == 5
    assert sorted((json.loads(x)["case_id"], json.loads(x)["round"]) for x in again) == sorted(pairs)
    df = load_results(out)
    assert len(df) == 4 and set(df["replicates"]) == {3}


def test_run_repeat_prints_the_interval_and_tasks_run_once(tmp_path, tiny_suite, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--suite", str(tiny_suite), "-o", str(out), "--executor", "inline", "--repeat", "2"]
    assert main([*args, "--only", "softmax.naive"]) == 0
    captured = capsys.readouterr()
    assert "4 cases × 2 rounds" in captured.err
    assert len(out.read_text().splitlines()) == 8
    assert "[" in captured.out and "95 % CI" in captured.out  # `0.0123 [0.0119, 0.0131]`
    untimed = tiny_suite.read_text().replace('metrics = ["time"]', 'metrics = ["memory"]')
    tiny_suite.write_text(untimed)
    assert repeats(with_repeat(load_suite(str(tiny_suite)), 5)) == 1
    assert repeats(with_repeat(load_suite("retrieval"), 5)) == 1  # a task trains once


@pytest.mark.parametrize(("value", "message"), [(0, "must be at least 1"), (5000, "must be at most 1000")])
def test_repeat_out_of_bounds_is_one_line(tmp_path, tiny_suite, user_error, value, message):
    out = tmp_path / "r.jsonl"
    line = user_error("run", "--suite", tiny_suite, "-o", out, "--repeat", value)
    assert line == f"--repeat {value}: {message}, not {value}"
    tiny_suite.write_text(tiny_suite.read_text().replace("[suite]\n", f"[suite]\nrepeat = {value}\n"))
    assert user_error("run", "--suite", tiny_suite, "-o", out).endswith(
        f":3: [suite] repeat {message}, not {value}"
    )

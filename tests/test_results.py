from __future__ import annotations

import json

import pytest

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.outcome import Outcome
from attnbench.results import ResultStore, load_results, make_record, read_records


def outcome(status="ok", **metrics):
    return Outcome(status, None, metrics, [], {"threads": 1})


def test_records_append_one_line_each_and_a_cut_line_is_kept_apart(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    a, b = Case("softmax.naive", seq_len=64), Case("softmax.naive", seq_len=128)
    store.append(make_record(a, outcome(latency_ms=1.0), "s"))
    with open(path, "ab") as f:
        f.write(b'{"case_id": "cut sho')  # a kill mid-write
    store.append(make_record(b, outcome(latency_ms=2.0), "s"))
    warnings: list[str] = []
    records = read_records(path, warn=warnings.append)
    assert [r["case_id"] for r in records] == [a.id, b.id]
    assert warnings == [f"{path}:2: skipped a line that is not JSON"]
    assert store.done_ids() == {a.id, b.id}


def test_load_results_flattens_cases_and_metrics_and_the_last_record_wins(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultStore(path)
    case = Case("softmax.naive", seq_len=64, causal=True)
    store.append(make_record(case, outcome("timeout"), "s"))
    store.append(make_record(case, outcome(latency_ms=3.0, peak_mem_bytes=1024), "s"))
    df = load_results(path)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["status"], row["latency_ms"], row["peak_mem_bytes"], row["seq_len"], row["causal"]) == (
        "ok",
        3.0,
        1024,
        64,
        True,
    )


def test_case_ids_are_stable_and_differ_by_any_field():
    a = Case("softmax.naive", seq_len=64)
    assert a.id == Case.from_dict(a.to_dict()).id == Case("softmax.naive", seq_len=64).id
    assert (
        len(
            {
                a.id,
                Case("softmax.naive", seq_len=65).id,
                Case("softmax.naive", seq_len=64, threads=2).id,
                Case("softmax.naive", (("p", 1),), seq_len=64).id,
            }
        )
        == 4
    )


def test_unreadable_results_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read results file"):
        load_results(tmp_path / "missing.jsonl")


def test_records_of_the_wrong_types_are_skipped_with_a_warning_naming_file_line_and_field(tmp_path):
    good = make_record(Case("softmax.naive", seq_len=64), outcome(latency_ms=1.0), "s")
    bad = [
        {**good, "case": "str"},
        {**good, "metrics": {"latency_ms": "fast"}},
        {**good, "case": {**good["case"], "seq_len": "64"}},
        {**good, "case": {**good["case"], "causal": "yes"}},
        {**good, "status": "fine"},
        {**good, "flags": [1]},
        {**good, "metrics": {"peak_mem_bytes": float("inf")}},
        {**good, "case_id": 7},
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good, *bad]))
    warnings: list[str] = []
    assert read_records(path, warn=warnings.append) == [good]
    assert warnings == [
        f"{path}:{i}: skipped a line that is not an attnbench result: {why}"
        for i, why in enumerate(
            [
                "case is 'str', not an object",
                "metrics.latency_ms is 'fast', not a finite number",
                "case.seq_len is '64', not an integer",
                "case.causal is 'yes', not true/false",
                "status 'fine' is none of ok, inaccurate, oom, timeout, crash, unsupported, error",
                "flags holds something other than strings",
                "metrics.peak_mem_bytes is inf, not a finite number",
                "case_id is 7, not a string",
            ],
            start=2,
        )
    ]


def test_show_keeps_the_good_records_of_a_file_with_badly_typed_ones(tmp_path, capsys):
    from attnbench.cli import main

    good = make_record(Case("softmax.naive", seq_len=64), outcome(latency_ms=1.5), "s")
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "case": "str"}) + "\n")
    assert main(["show", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1.5" in captured.out and f"{path}:2: skipped" in captured.err

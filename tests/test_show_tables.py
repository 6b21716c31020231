"""Tables that answer: several metrics in one `show`, ratios to a baseline at the same shape,
and several files kept as runs (disagreements said) or combined."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from attnbench.cli import main


def record(variant: str, n: int, latency: float, mem: int, *, iqr: float = 0.0, status: str = "ok") -> dict:
    case = {"variant": variant, "params": {}, "batch": 1, "heads": 8, "seq_len": n, "d_head": 64,
            "dtype": "float32", "device": "cpu", "causal": True, "mode": "fwd", "threads": 2}  # fmt: skip
    metrics = {"latency_ms": latency, "latency_iqr_ms": iqr, "peak_mem_bytes": mem, "rel_err": 1e-7}
    return {"case_id": f"{variant}-{n}", "status": status, "case": case, "suite": "fixture",
            "metrics": metrics if status == "ok" else {}, "env": {"hostname": "h"}}  # fmt: skip


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


FIXTURE = [
    record("softmax.sdpa", 1024, 10.0, 4 * 2**20),
    record("softmax.sdpa", 2048, 40.0, 8 * 2**20),
    record("linear.elu", 1024, 5.0, 8 * 2**20),
    record("linear.elu", 2048, 8.0, 16 * 2**20),
    record("softmax.sdpa_cudnn", 1024, 0, 0, status="unsupported"),
]


def csv_of(capsys) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_several_metrics_and_ratios_to_a_baseline_in_one_table(tmp_path, capsys):
    path = write(tmp_path / "r.jsonl", FIXTURE)
    args = ["show", str(path), "--metric", "latency_ms,peak_mem_bytes", "--baseline", "softmax.sdpa"]
    assert main([*args, "--format", "csv"]) == 0
    table = csv_of(capsys).set_index(["label", "N"])
    assert table.loc[("linear.elu", 2048), "speed-up vs softmax.sdpa"] == pytest.approx(5.0)  # 40 / 8
    assert table.loc[("linear.elu", 1024), "peak_mem_bytes ÷ softmax.sdpa"] == pytest.approx(2.0)
    assert table.loc[("softmax.sdpa", 2048), "speed-up vs softmax.sdpa"] == pytest.approx(1.0)
    assert "softmax.sdpa_cudnn" not in table.index.get_level_values(0)  # never ran: left out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "5×" in out and "2×" in out and "median latency" in out and "peak memory" in out


def test_a_baseline_that_is_not_in_the_results_is_one_line(tmp_path, user_error):
    path = write(tmp_path / "r.jsonl", FIXTURE)
    line = user_error("show", path, "--baseline", "softmax.sdp")
    assert line.startswith("--baseline 'softmax.sdp': no such variant in these results") and "sdpa" in line


def test_two_files_keep_every_measurement_and_say_where_they_disagree(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", FIXTURE)
    b = write(tmp_path / "b.jsonl", [record("softmax.sdpa", 1024, 10.2, 4 * 2**20, iqr=0.2),
                                     record("softmax.sdpa", 2048, 70.5, 8 * 2**20, iqr=1.0)])  # fmt: skip
    assert main(["show", str(a), str(b), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: runs disagree")]
    assert len(warnings) == 1  # 10.0 against 10.2 is within the 10 % band; 40 against 70.5 is not
    assert (
        "softmax.sdpa N=2048" in warnings[0]
        and "70.5 ms in b.jsonl" in warnings[0]
        and "40 ms in a.jsonl" in warnings[0]
    )
    table = pd.read_csv(io.StringIO(captured.out))
    sdpa = table[table["label"] == "softmax.sdpa"]
    assert sorted(sdpa["run"]) == ["a.jsonl", "b.jsonl"]  # both measurements, one row each
    assert sorted(sdpa["N=2048"]) == [40.0, 70.5]


def test_combine_median_gives_one_row_per_case(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", FIXTURE)
    b = write(tmp_path / "b.jsonl", [record("softmax.sdpa", 2048, 70.0, 8 * 2**20)])
    c = write(tmp_path / "c.jsonl", [record("softmax.sdpa", 2048, 50.0, 8 * 2**20)])
    assert main(["show", str(a), str(b), str(c), "--format", "csv", "--combine", "median"]) == 0
    captured = capsys.readouterr()
    assert "runs disagree" not in captured.err
    table = pd.read_csv(io.StringIO(captured.out)).set_index("label")
    assert "run" not in table and table.loc["softmax.sdpa", "N=2048"] == 50.0  # median of 40, 70, 50


def test_shards_of_one_sweep_read_as_one_run(tmp_path, capsys):
    a = write(tmp_path / "a.jsonl", FIXTURE[:2])
    b = write(tmp_path / "b.jsonl", FIXTURE[2:])
    assert main(["show", str(a), str(b), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert "run" not in pd.read_csv(io.StringIO(captured.out)) and "measurements" not in captured.err

"""The regression gate on synthetic results: planted regressions are caught and named, a
uniformly slower machine and identical files pass, bad input is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnbench.cases import Case
from attnbench.cli import main
from attnbench.outcome import Outcome
from attnbench.results.store import make_record

VARIANTS = ["softmax.sdpa", "softmax.naive", "linear.elu"]
LENGTHS = [512, 1024]
BASE_MS = {"softmax.sdpa": 1.0, "softmax.naive": 3.0, "linear.elu": 2.0}


def case(variant: str, n: int) -> Case:
    return Case(variant, (), 1, 4, n, 64, "float32", "cpu", True, "fwd", 2)


def results(path, *, slower: float = 1.0, plant: dict | None = None) -> str:
    """A results file: latency scaled by `slower` everywhere, then `plant` applied:
    {(variant, n): {"latency": factor, "memory": extra bytes, "status": status}}."""
    plant = plant or {}
    lines = []
    for v in VARIANTS:
        for n in LENGTHS:
            change = plant.get((v, n), {})
            latency = BASE_MS[v] * n / 512 * slower * change.get("latency", 1.0)
            status = change.get("status", "ok")
            metrics = (
                {
                    "latency_ms": latency,
                    "latency_iqr_ms": 0.02 * latency,
                    "peak_mem_bytes": 1_000_000 * n // 512 + change.get("memory", 0),
                }
                if status == "ok"
                else {}
            )
            outcome = Outcome(status, None if status == "ok" else "out of memory", metrics)
            lines.append(json.dumps(make_record(case(v, n), outcome, "ci")))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def gate(tmp_path, capsys, current: dict, *extra: str) -> tuple[int, str]:
    base = results(tmp_path / "base.jsonl")
    cur = results(tmp_path / "cur.jsonl", **current)
    capsys.readouterr()
    code = main(["compare", base, cur, *extra])
    return code, capsys.readouterr().out


def test_identical_files_pass(tmp_path, capsys):
    code, out = gate(tmp_path, capsys, {})
    assert code == 0 and "no regression" in out and "6 cases compared" in out


def test_a_uniformly_slower_machine_is_no_regression(tmp_path, capsys):
    code, out = gate(tmp_path, capsys, {"slower": 2.0})
    assert code == 0 and "no regression" in out


def test_a_planted_30_percent_slowdown_is_caught_and_named(tmp_path, capsys):
    code, out = gate(tmp_path, capsys, {"plant": {("linear.elu", 1024): {"latency": 1.3}}})
    assert code == 1 and "REGRESSION" in out and "linear.elu" in out and "N1024" in out and "+30.0%" in out


def test_a_slowdown_inside_the_noise_is_not_a_regression(tmp_path, capsys):
    code, _ = gate(tmp_path, capsys, {"plant": {("linear.elu", 1024): {"latency": 1.05}}})
    assert code == 0


def test_a_planted_memory_increase_is_caught(tmp_path, capsys):
    code, out = gate(
        tmp_path, capsys, {"plant": {("softmax.naive", 512): {"memory": 64}}}, "--metrics", "memory"
    )
    assert code == 1 and "softmax.naive" in out and "memory" in out and "1,000,064 B" in out


def test_ok_to_oom_is_a_regression(tmp_path, capsys):
    code, out = gate(tmp_path, capsys, {"plant": {("softmax.naive", 1024): {"status": "oom"}}})
    assert code == 1 and "status" in out and "oom" in out and "softmax.naive" in out


def test_new_and_missing_cases_are_listed_not_fatal(tmp_path, capsys):
    base = results(tmp_path / "base.jsonl")
    lines = (tmp_path / "base.jsonl").read_text().splitlines()
    extra = json.dumps(make_record(case("linear.elu", 2048), Outcome("ok"), "ci"))
    (tmp_path / "cur.jsonl").write_text("\n".join([*lines[1:], extra]) + "\n")
    capsys.readouterr()
    assert main(["compare", base, str(tmp_path / "cur.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "missing" in out and "N2048" in out


@pytest.mark.parametrize("content", ["not json at all\n", ""])
def test_malformed_input_is_one_line_and_exit_2(tmp_path, content):
    base = results(tmp_path / "base.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "attnbench", "compare", base, str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("attnbench: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors == [f"attnbench: error: {bad} holds no results"]


def test_compiled_kernels_memory_has_a_tolerance(tmp_path, capsys):
    def flex(path, extra: int) -> str:
        metrics = {"latency_ms": 1.0, "peak_mem_bytes": 1_000_000 + extra, "compiles": 1}
        record = make_record(case("softmax.flex", 512), Outcome("ok", metrics=metrics), "ci")
        path.write_text(json.dumps(record) + "\n")
        return str(path)

    base = flex(tmp_path / "b.jsonl", 0)
    assert main(["compare", base, flex(tmp_path / "c.jsonl", 10_000), "--metrics", "memory"]) == 0  # +1 %
    assert main(["compare", base, flex(tmp_path / "d.jsonl", 50_000), "--metrics", "memory"]) == 1  # +5 %


def test_compare_of_files_with_no_case_in_common_is_exit_2_not_zero_cases_compared(tmp_path, user_error):
    base = results(tmp_path / "base.jsonl")
    other = tmp_path / "other.jsonl"
    record = make_record(
        Case("softmax.sdpa", (), 1, 4, 777, 64), Outcome("ok", metrics={"latency_ms": 1.0}), "x"
    )
    other.write_text(json.dumps(record) + "\n")
    assert user_error("compare", base, other) == (
        "the baseline and current results have no case in common (another suite, shapes or parameters): "
        "there is nothing to compare"
    )


def test_unknown_reference_variant_is_exit_2_instead_of_a_silent_speed_gate(tmp_path, user_error):
    base = results(tmp_path / "base.jsonl")
    line = user_error("compare", base, base, "--reference", "softmax.spda")
    assert line.startswith(
        "--reference 'softmax.spda': no such variant in these results (did you mean 'softmax.sdpa'?)"
    )
    # without the speed gate, no reference is needed
    assert main(["compare", base, base, "--reference", "no.such.variant", "--metrics", "memory,status"]) == 0

"""The noise detector: every timed record says what disturbed it; a fault-heavy call is flagged
`page_faults`; spinning neighbours flag `contended` and make a sweep warn before it starts;
DAMON's pageout scheme is read from sysfs; the report shows a banner when many timed cases were
disturbed; the allocator's trim threshold fits mallopt's C int."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from pathlib import Path

import pytest

from attnbench.cases import Case
from attnbench.measure import allocator, noise
from attnbench.measure.settings import MeasureSettings
from attnbench.outcome import Outcome
from attnbench.report.html import build_report
from attnbench.results import load_results
from attnbench.results.store import make_record
from attnbench.runner.execute import execute

QUICK = MeasureSettings(metrics=("time",), min_run_time=0.02, min_samples=3, warmup=1, calibrate=False)
NOISE_METRICS = ("faults_minor", "faults_major", "faults_per_call", "ctx_involuntary", "other_cpu_s",
                 "other_cores", "steal_s", "timed_calls", "timed_wall_s")  # fmt: skip

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def spin() -> None:
    while True:
        pass


@pytest.fixture
def spinners():
    """As many busy processes as this machine has cores, for the test's duration."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=spin, daemon=True) for _ in range(noise.cores())]
    for p in procs:
        p.start()
    yield procs
    for p in procs:
        p.kill()
        p.join(timeout=10)


def test_a_timed_record_says_what_disturbed_it():
    outcome = execute(Case("softmax.sdpa", (), 1, 2, 64, 16, threads=1), QUICK)
    assert outcome.status == "ok"
    for key in NOISE_METRICS:
        assert key in outcome.metrics, key
    assert outcome.metrics["timed_calls"] >= 3
    assert "damon_pageout" in outcome.env and "cpu_governor" in outcome.env


def test_touching_freshly_mapped_pages_in_the_call_is_flagged_page_faults(faulty_variants):
    outcome = execute(Case("testing.faults", (), 1, 2, 64, 16, threads=1), QUICK)
    assert outcome.status == "ok", outcome.error
    assert outcome.metrics["faults_per_call"] >= 4096  # 16 MiB of 4 KiB pages, every call
    assert "page_faults" in outcome.flags


def test_a_steady_call_has_no_page_faults_flag():
    allocator.steady_cpu_allocator()  # as every executor does
    case = Case("softmax.naive", (), 1, 2, 256, 16, threads=1)
    execute(case, QUICK)  # the first call of a shape maps its heap, as a sweep's first case does
    outcome = execute(case, dataclasses.replace(QUICK, min_run_time=0.2))
    assert "page_faults" not in outcome.flags, outcome.metrics


def test_spinning_neighbours_flag_contended_and_warn_before_a_sweep(spinners):
    outcome = execute(Case("softmax.sdpa", (), 1, 2, 64, 16, threads=noise.cores()), QUICK)
    assert outcome.metrics["other_cores"] > noise.CONTENDED_CORES
    assert "contended" in outcome.flags
    message = noise.busy_warning(0.3)
    assert message is not None and message.startswith("this machine is busy: other processes used")


def test_the_busy_warning_is_one_line_before_the_first_case(spinners, tmp_path, tiny_suite, capsys):
    from attnbench.cli import main

    assert (
        main(["run", "--suite", str(tiny_suite), "-o", str(tmp_path / "r.jsonl"), "--executor", "inline"])
        == 0
    )
    lines = capsys.readouterr().err.splitlines()
    warning = [i for i, line in enumerate(lines) if line.startswith("warning: this machine is busy")]
    assert len(warning) == 1 and lines[0].startswith("tiny: 4 cases") and warning[0] == 1


def damon_tree(root: Path, action: str, state: str) -> None:
    scheme = root / "0" / "contexts" / "0" / "schemes" / "0"
    scheme.mkdir(parents=True)
    (scheme / "action").write_text(action + "\n")
    (root / "0" / "state").write_text(state + "\n")


@pytest.mark.parametrize(("action", "state", "expected"), [("pageout", "on", True), ("pageout", "off", False),
                                                           ("stat", "on", False)])  # fmt: skip
def test_a_running_damon_pageout_scheme_is_recognised(tmp_path, monkeypatch, action, state, expected):
    damon_tree(tmp_path, action, state)
    monkeypatch.setattr(noise, "DAMON_ADMIN", str(tmp_path))
    assert noise.damon_pageout() is expected
    monkeypatch.setattr(noise, "DAMON_ADMIN", str(tmp_path / "absent"))
    assert noise.damon_pageout() is None


def timed_record(n: int, flags: list[str]) -> dict:
    metrics = {"latency_ms": 1.0 + n / 1000, "latency_iqr_ms": 0.01}
    return make_record(
        Case("softmax.sdpa", (), 1, 2, n, 16, threads=1), Outcome("ok", None, metrics, flags), "s"
    )


@pytest.mark.parametrize(("disturbed", "banner"), [(1, False), (4, True)])
def test_the_report_warns_when_many_timed_cases_were_disturbed(tmp_path, disturbed, banner):
    records = [timed_record(64 + i, ["contended"] if i < disturbed else []) for i in range(10)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    html = build_report(load_results(path), title="t")
    assert ('id="disturbed"' in html) is banner
    if banner:
        assert f"{disturbed} of 10 timed cases were disturbed while timed ({disturbed} contended" in html


def test_the_trim_threshold_fits_mallopts_c_int():
    assert allocator.TRIM_THRESHOLD <= allocator.C_INT_MAX
    if allocator._glibc() is not None:
        assert allocator.steady_cpu_allocator().endswith(f"trim_threshold={allocator.TRIM_THRESHOLD}")
        with pytest.raises(ValueError, match="does not fit in a C int"):
            allocator._mallopt(allocator._glibc(), allocator.M_TRIM_THRESHOLD, 4 << 30)

"""Isolation: a case that runs out of memory, kills its process or hangs is recorded as
`oom`, `crash` or `timeout`, and the sweep goes on with the worker replaced."""

from __future__ import annotations

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.results import load_results
from attnbench.runner.executors import InlineExecutor, SubprocessExecutor
from attnbench.runner.sweep import run_sweep
from attnbench.suites import Suite

FAST = MeasureSettings(min_run_time=0.01, warmup=0, calibrate=False)


def case(name: str, n: int = 32) -> Case:
    return Case(name, (), 1, 2, n, 16, "float32", "cpu", False, "fwd", threads=1)


def test_faults_become_statuses_and_the_sweep_goes_on(faulty_variants, tmp_path):
    cases = [
        case("testing.ok"),
        case("testing.oom"),
        case("testing.ok", 48),
        case("testing.crash"),
        case("testing.ok", 64),
        case("testing.hang"),
        case("testing.ok", 80),
    ]
    suite = Suite(name="faults", path=tmp_path / "faults.toml", timeout_s=8, settings=FAST)
    out = tmp_path / "faults.jsonl"
    outcome = run_sweep(suite, cases, out=out, executor="subprocess", mem_limit=4 << 30)
    df = load_results(out).set_index("case_id")
    status = {c.id: df.loc[c.id, "status"] for c in cases}
    assert [status[c.id] for c in cases] == ["ok", "oom", "ok", "crash", "ok", "timeout", "ok"]
    assert df.loc[cases[3].id, "error"].count("SIGSEGV") == 2  # its first worker, then the rerun's
    assert "allocate" in df.loc[cases[1].id, "error"]  # torch's own message, not a kill
    # replaced after the crash, again after the crash's rerun, and after the hang; the OOM
    # did not cost a worker
    assert outcome.worker_starts == 4
    assert df.loc[cases[6].id, "rel_err"] < 1e-5


def test_worker_is_reused_across_cases(tmp_path):
    executor = SubprocessExecutor(FAST, timeout_s=60)
    try:
        statuses = [executor.run(case("softmax.naive", n)).status for n in (16, 32, 48)]
    finally:
        executor.close()
    assert executor.starts == 1 and statuses == ["ok"] * 3


def test_inline_and_subprocess_give_the_same_non_timing_metrics():
    c = case("softmax.naive", 100)
    settings = MeasureSettings(metrics=("memory", "error"), warmup=0, calibrate=False)
    inline = InlineExecutor(settings).run(c)
    sub = SubprocessExecutor(settings, timeout_s=60)
    try:
        isolated = sub.run(c)
    finally:
        sub.close()
    for key in ("peak_mem_bytes", "rel_err", "max_abs_err"):
        assert inline.metrics[key] == isolated.metrics[key], key


def test_unsupported_case_is_recorded_with_its_reason():
    result = InlineExecutor(FAST).run(case("softmax.sdpa_efficient"))
    assert result.status == "unsupported" and "efficient" in result.error
    result = InlineExecutor(FAST).run(Case("softmax.flex", (), 1, 2, 32, 16, mode="fwd+bwd", threads=1))
    assert result.status == "unsupported" and "backward" in result.error

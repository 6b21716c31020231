"""torch.compile never falls back silently: past the compile cache, each case is either
compiled or flagged `fallback_eager`; a recompile inside the timed region is flagged too."""

from __future__ import annotations

from attnbench.cases import Case
from attnbench.measure import compile_guard
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.execute import execute
from attnbench.runner.executors import SubprocessExecutor


def flex_case(n: int, threads: int = 2) -> Case:
    return Case("softmax.flex", (), 1, 2, n, 16, "float32", "cpu", False, "fwd", threads=threads)


def test_flex_past_the_compile_cache_is_compiled_or_flagged_never_silently_eager():
    settings = MeasureSettings(min_run_time=0.01, warmup=1, calibrate=False, recompile_limit=2)
    executor = SubprocessExecutor(settings, timeout_s=300)  # a fresh process: an empty compile cache
    try:
        results = [executor.run(flex_case(n)) for n in (64, 96, 128, 160, 64)]
    finally:
        executor.close()
    summary = [(r.status, r.error, r.flags, r.metrics.get("compiles")) for r in results]
    assert [r.status for r in results] == ["ok"] * 5, summary
    for r in results:
        compiled = r.metrics["compiles"] >= 1
        fell_back = "fallback_eager" in r.flags
        cached = not compiled and not fell_back
        assert compiled != fell_back or cached, summary
        assert r.metrics["valid"] is (not fell_back), summary
        assert r.metrics["rel_err"] < 1e-5  # the eager path is slow, not wrong
    assert [r.metrics["compiles"] >= 1 for r in results[:2]] == [True, True], summary
    assert ["fallback_eager" in r.flags for r in results[2:4]] == [True, True], summary
    # a shape compiled before the limit was hit still runs its compiled graph
    assert "fallback_eager" not in results[4].flags and results[4].metrics["valid"], summary


def test_recompiling_inside_the_timed_region_is_flagged(faulty_variants):
    case = Case("testing.recompiles", (), 1, 2, 32, 16, threads=1)
    result = execute(
        case, MeasureSettings(min_run_time=0.01, warmup=0, calibrate=False, recompile_limit=10_000)
    )
    assert result.status == "ok", result.error
    assert "recompiled_during_timing" in result.flags and result.metrics["valid"] is False


def test_configured_reports_what_configure_set():
    """`configured` gives the settings back (the test fixture that isolates each test's
    torch.compile settings puts them back from it)."""
    compile_guard.configure(5)
    got = compile_guard.configured()
    assert got["fail_on_recompile_limit_hit"] is True
    assert got.get("recompile_limit", got.get("cache_size_limit")) == 5
    assert got["accumulated_recompile_limit"] >= 20

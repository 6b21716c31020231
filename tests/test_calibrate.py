"""Ceilings are measured once per machine, device and thread count, cached, and turned into
% of peak in results."""

from __future__ import annotations

import pytest

from attnbench import env
from attnbench.cases import Case
from attnbench.measure import calibrate
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.execute import execute


@pytest.fixture
def fake_machine(monkeypatch, tmp_path):
    monkeypatch.setenv(env.CACHE_ENV, str(tmp_path))
    calls = []
    monkeypatch.setattr(
        calibrate, "measure_matmul", lambda d, dtype, t: calls.append(("mm", dtype, t)) or 1e11 * t
    )
    monkeypatch.setattr(calibrate, "measure_copy", lambda d, t: calls.append(("copy", t)) or 1e10)
    return calls


def test_ceilings_are_cached_per_thread_count_and_dtype(fake_machine):
    first = calibrate.ceilings("cpu", 2, ("float32",))
    again = calibrate.ceilings("cpu", 2, ("float32",))
    assert first.matmul_flops == again.matmul_flops == {"float32": 2e11}
    assert fake_machine == [("mm", "float32", 2), ("copy", 2)]
    calibrate.ceilings("cpu", 2, ("float32", "bfloat16"))  # only the new dtype is measured
    calibrate.ceilings("cpu", 1, ("float32",))  # another thread count is another machine state
    assert fake_machine[2:] == [("mm", "bfloat16", 2), ("mm", "float32", 1), ("copy", 1)]
    assert calibrate.ceilings("cpu", 4, measure=False) is None


def test_results_report_percent_of_the_measured_peak(fake_machine):
    case = Case("softmax.sdpa_math", (), 1, 2, 128, 32, threads=1)
    m = execute(case, MeasureSettings(metrics=("time",), min_run_time=0.01)).metrics
    assert m["pct_peak_flops"] == pytest.approx(100 * m["tflops"] * 1e12 / 1e11)
    min_bytes = 4 * (1 * 2 * 128 * 32) * 4  # q, k, v read and o written, fp32
    assert m["pct_peak_bw"] == pytest.approx(100 * min_bytes / (m["latency_ms"] / 1e3) / 1e10)

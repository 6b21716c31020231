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


def test_two_workers_calibrating_one_machine_at_once_measure_it_once(fake_machine, monkeypatch):
    import threading

    real, arrived, measuring = calibrate._load, threading.Event(), threading.Event()

    def load():  # the second worker has found nothing cached while the first measures
        if threading.current_thread().name == "second" and measuring.is_set():
            arrived.set()
        return real()

    def slow_matmul(device, dtype, threads):
        fake_machine.append(("mm", dtype, threads))
        measuring.set()
        arrived.wait(60)
        return 1e11

    monkeypatch.setattr(calibrate, "_load", load)
    monkeypatch.setattr(calibrate, "measure_matmul", slow_matmul)
    found = {}
    work = lambda name: found.update({name: calibrate.ceilings("cpu", 2, ("float32",))})
    first = threading.Thread(target=work, args=("first",), name="first")
    first.start()
    assert measuring.wait(60)
    second = threading.Thread(target=work, args=("second",), name="second")
    second.start()
    first.join(60)
    second.join(60)
    assert fake_machine == [("mm", "float32", 2), ("copy", 2)]
    assert found["first"].matmul_flops == found["second"].matmul_flops == {"float32": 1e11}

"""The subprocess worker does not grow over a sweep: the allocator's free pages go back to the
kernel between cases (see `attnbench.measure.allocator`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.executors import SubprocessExecutor


def rss_mib(pid: int) -> float:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_rss_stays_flat_over_ascending_cases_with_memory_measured():
    # before the fix these 40 cases grew the worker by ~130 MiB (3.4 MiB per case)
    settings = MeasureSettings(metrics=("memory",), warmup=0, calibrate=False)
    variants = ("softmax.naive", "softmax.sdpa", "linear.elu")
    cases = [Case(variants[i % 3], (), 1, 8, 256 + 8 * i, 64, threads=1) for i in range(40)]
    executor = SubprocessExecutor(settings, timeout_s=120)
    try:
        samples = []
        for case in cases:
            assert executor.run(case).status == "ok"
            samples.append(rss_mib(executor._proc.pid))
    finally:
        executor.close()
    assert executor.starts == 1  # one worker measured every case
    assert max(samples[5:]) - samples[5] < 40, samples

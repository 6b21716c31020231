"""The timer's bookkeeping (never its speed): quartiles over enough samples, and the thread
count the timed code really ran with."""

from __future__ import annotations

import torch

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.measure.timing import Timing, time_cpu
from attnbench.runner.execute import execute


def test_timed_code_runs_with_the_requested_thread_count():
    seen: set[int] = set()
    before = torch.get_num_threads()
    for threads in (1, 2):
        seen.clear()
        timing = time_cpu(lambda: seen.add(torch.get_num_threads()), threads=threads, min_run_time=0.01)
        assert seen == {threads} and timing.threads == threads
    assert torch.get_num_threads() == before


def test_quartiles_come_from_at_least_the_minimum_number_of_samples():
    timing = time_cpu(lambda: torch.ones(64).sum(), threads=1, min_run_time=0.01, min_samples=9)
    assert timing.n >= 9
    assert 0 < timing.q25_s <= timing.median_s <= timing.q75_s
    assert timing.method == "torch.utils.benchmark"


def test_noisy_flag_follows_the_spread():
    assert Timing(1.0, 0.9, 1.2, 10, "x", 1).noisy
    assert not Timing(1.0, 0.98, 1.03, 10, "x", 1).noisy


def test_results_record_the_thread_count_used():
    case = Case("softmax.sdpa_math", (), 1, 2, 64, 16, threads=1)
    result = execute(case, MeasureSettings(metrics=("time",), min_run_time=0.01, calibrate=False))
    assert result.status == "ok"
    assert result.metrics["threads_used"] == 1 and result.env["threads"] == 1
    m = result.metrics
    assert m["latency_q25_ms"] <= m["latency_ms"] <= m["latency_q75_ms"]
    assert m["tokens_per_s"] == 64 / (m["latency_ms"] / 1e3)
    assert m["flops"] == 4 * 2 * 64 * 64 * 16

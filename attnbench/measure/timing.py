"""Latency: median and quartiles over repeated runs, after warm-up.

CPU: torch.utils.benchmark.Timer with the case's thread count passed explicitly (Timer runs
single-threaded unless told otherwise). GPU: triton.testing.do_bench, which synchronises,
flushes L2 between repeats and reads CUDA events; plain CUDA events when Triton is missing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.utils.benchmark as tbench

from attnbench.measure.settings import MeasureSettings

NOISY_IQR = 0.10  # IQR / median above this flags a measurement as noisy


@dataclass(frozen=True)
class Timing:
    median_s: float
    q25_s: float
    q75_s: float
    n: int  # number of timed samples the quantiles come from
    method: str
    threads: int
    calls: int = 0  # calls timed in all (a CPU sample times a block of calls)

    @property
    def iqr_s(self) -> float:
        return self.q75_s - self.q25_s

    @property
    def noisy(self) -> bool:
        return self.iqr_s > NOISY_IQR * self.median_s


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


def time_cpu(
    fn: Callable[[], object],
    *,
    threads: int,
    min_run_time: float = MeasureSettings.min_run_time,
    min_samples: int = MeasureSettings.min_samples,
) -> Timing:
    """Median over blocks of `torch.utils.benchmark.Timer.blocked_autorange`, topped up to
    `min_samples` blocks for calls too slow to give that many within `min_run_time`."""
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    samples = list(m.times)
    while len(samples) < min_samples:
        samples.extend(timer.timeit(m.number_per_run).times)
    q1, q2, q3 = _quartiles(samples)
    calls = len(samples) * m.number_per_run
    return Timing(q2, q1, q3, len(samples), "torch.utils.benchmark", threads, calls)


def time_cuda(fn: Callable[[], object], *, rep_ms: int = 100) -> Timing:
    """Quartiles of `triton.testing.do_bench`'s per-run times (L2 flushed between repeats),
    or of CUDA events where Triton is missing."""
    try:
        from triton.testing import do_bench
    except ImportError:
        return _time_cuda_events(fn, rep_ms=rep_ms)
    samples = [t / 1e3 for t in do_bench(fn, warmup=25, rep=rep_ms, return_mode="all")]
    q1, q2, q3 = _quartiles(samples)
    threads = torch.get_num_threads()
    return Timing(q2, q1, q3, len(samples), "triton.testing.do_bench", threads, len(samples))


def _time_cuda_events(fn: Callable[[], object], *, rep_ms: int) -> Timing:
    cache = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda")
    fn()
    torch.cuda.synchronize()
    samples: list[float] = []
    total = 0.0
    while total < rep_ms / 1e3 or len(samples) < 10:
        cache.zero_()  # flush L2
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / 1e3)
        total += samples[-1]
    q1, q2, q3 = _quartiles(samples)
    return Timing(q2, q1, q3, len(samples), "cuda-events", torch.get_num_threads(), len(samples))


def time_fn(
    fn: Callable[[], object],
    *,
    device: str,
    threads: int,
    min_run_time: float = MeasureSettings.min_run_time,
    min_samples: int = MeasureSettings.min_samples,
) -> Timing:
    if device == "cuda":
        return time_cuda(fn, rep_ms=max(25, int(min_run_time * 1e3)))
    return time_cpu(fn, threads=threads, min_run_time=min_run_time, min_samples=min_samples)

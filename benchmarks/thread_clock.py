"""A plugin for `benchmarks/linear_speed.py --clock thread`: the harness's CPU timer reads the
calling thread's CPU time (`time.thread_time`) instead of the wall clock.

On a VM whose two cores other processes share, a one-thread case's wall time counts the time
it waits for a core (measured here: the same `linear.elu` call from 43 to 104 ms within a few
minutes); its thread's CPU time does not. It is the case's time only with one thread (the
intra-op pool's other threads are not counted), so the benchmark allows it only with
--threads 1. Caches and memory bandwidth are still shared: the spread narrows, it does not vanish.
"""

from __future__ import annotations

import time

import torch.utils.benchmark as tbench

from attnbench.measure import timing


class ThreadClockTimer(tbench.Timer):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("timer", time.thread_time)
        super().__init__(*args, **kwargs)


timing.tbench = type("tbench", (), {"Timer": ThreadClockTimer})  # what time_cpu constructs

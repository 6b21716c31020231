"""Peak memory of one call: the most bytes allocated during the call and live at once,
not counting what existed before it (inputs, parameters).

CPU: every allocation and free of the CPU allocator during the call, read from the PyTorch
profiler's memory events (`profile_memory=True`), summed in time order. That sees inside
kernels and compiled (inductor) code, and is exact and repeatable for a given thread count,
so CI can gate on it. GPU: `torch.cuda.max_memory_allocated` over the call, minus the
allocation before it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import torch
from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def peak_bytes(fn: Callable[[], object], device: str) -> int:
    return peak_bytes_cuda(fn) if device == "cuda" else peak_bytes_cpu(fn)


def peak_bytes_cpu(fn: Callable[[], object]) -> int:
    with _quiet_kineto(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [
        e
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def peak_bytes_cuda(fn: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Kineto prints `USDT: ... profiler_start/stop` lines to fd 2 on every profile; drop
    those, pass anything else through."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith("USDT:"):
                    sys.stderr.write(line)

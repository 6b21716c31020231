"""A trace of a case's timed call and its operator breakdown, from torch.profiler (kineto).

The call is the harness's own `Workload.call`, warm, traced `repeat` times inside one
profiler session, each under a `attnbench.call` range: the trace opens in Perfetto or
`chrome://tracing` (CPU operators with their input shapes; on CUDA also the kernels, Triton's
included, and the copies). The breakdown is the profiler's `key_averages`, per call:

- CPU: every operator by self time, with its calls, its share of the call's wall time, its
  FLOPs (the profiler's `with_flops`: matmuls, convolutions, some elementwise ops) and the
  bytes its tensor inputs span (from the recorded shapes and dtypes; views count what they
  view, so an upper bound on what the op reads). One more row, `(outside any operator)`, is
  the call's time in no operator at all: Python, the interpreter between ops, a loop's own
  cost (Holistic Trace Analysis calls its GPU form idle time).
- CUDA: every kernel, copy and fill by device time; `(GPU idle)` is the call's wall time
  in no kernel.

The profiler costs a few microseconds per operator, so the traced call is slower than the
timed one by about that per op; `TRACE_TOLERANCE` is what the profile's check allows.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from attnbench.measure.memory import _quiet_kineto

MARK = "attnbench.call"  # the profiler range around each traced call
TRACE_TOLERANCE = 0.25  # the traced call's wall time may differ from the timed median by this share
OUTSIDE_CPU = "(outside any operator)"
OUTSIDE_GPU = "(GPU idle)"
# the profiler's names for tensor element types (`_KinetoEvent.dtypes()`) and their sizes
ITEMSIZE = {
    "float": 4,
    "double": 8,
    "c10::BFloat16": 2,
    "c10::Half": 2,
    "long int": 8,
    "int": 4,
    "short int": 2,
    "signed char": 1,
    "unsigned char": 1,
    "bool": 1,
    "c10::complex<float>": 8,
    "c10::complex<double>": 16,
}
NOT_TENSORS = ("", "Scalar", "ScalarList", "string")  # arguments that hold no tensor data
OP_COLUMNS = ["op", "calls", "self_ms", "share_pct", "total_ms", "gflop", "gflop_per_s", "input_mb"]


class Call(Protocol):
    """What is traced: the harness's `Workload` (reset between calls, call)."""

    def reset(self) -> None: ...
    def call(self) -> None: ...


@dataclass(frozen=True)
class Trace:
    """A profiler session of `repeat` calls and each call's wall time."""

    prof: profile
    walls_ms: tuple[float, ...]
    device: str

    @property
    def repeat(self) -> int:
        return len(self.walls_ms)

    @property
    def wall_ms(self) -> float:
        """The median call's wall time: what the check holds against the timed median."""
        return statistics.median(self.walls_ms)

    @property
    def mean_wall_ms(self) -> float:
        """The mean call's: what the breakdown's shares are of, so that they add up to 100 %."""
        return statistics.fmean(self.walls_ms)

    def export(self, path: Path) -> Path:
        """The Chrome trace (JSON) of the session."""
        self.prof.export_chrome_trace(str(path))
        return path


def trace_calls(work: Call, device: str, *, repeat: int = 3) -> Trace:
    """Trace `repeat` calls of `work` (already warm) in one profiler session."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with _quiet_kineto(), profile(activities=activities, record_shapes=True, with_flops=True) as prof:
        for _ in range(repeat):
            work.reset()
            with record_function(MARK):
                work.call()
                if device == "cuda":
                    torch.cuda.synchronize()  # the range ends when the call's kernels do
    walls = tuple(e.cpu_time_total / 1e3 for e in _marks(prof))
    return Trace(prof, walls, device)


def _marks(prof: profile) -> list:
    return [e for e in prof.events() if e.name == MARK and e.device_type == DeviceType.CPU]


def op_breakdown(trace: Trace) -> pd.DataFrame:
    """One row per operator (CPU) or kernel (CUDA), per call, largest self time first, with
    the time in none of them as the last row; columns `OP_COLUMNS`."""
    rows = _cuda_rows(trace) if trace.device == "cuda" else _cpu_rows(trace)
    table = pd.DataFrame(rows, columns=OP_COLUMNS).sort_values("self_ms", ascending=False, kind="stable")
    return table.reset_index(drop=True)


def _cpu_rows(trace: Trace) -> list[list]:
    n, wall = trace.repeat, trace.mean_wall_ms
    bytes_in = input_bytes(trace.prof)
    rows = []
    for e in trace.prof.key_averages():
        if e.key == MARK or e.device_type != DeviceType.CPU:
            continue
        self_ms = e.self_cpu_time_total / 1e3 / n
        gflop = e.flops / 1e9 / n if e.flops else math.nan
        rows.append(
            [
                e.key,
                e.count / n,
                self_ms,
                100 * self_ms / wall,
                e.cpu_time_total / 1e3 / n,
                gflop,
                gflop / self_ms * 1e3 if e.flops and self_ms > 0 else math.nan,
                bytes_in[e.key] / 1e6 / n if e.key in bytes_in else math.nan,
            ]
        )
    # the time of each call under no operator: its wall time less its top-level operators'
    marks = _marks(trace.prof)
    outside = statistics.fmean(
        m.cpu_time_total - sum(c.cpu_time_total for c in m.cpu_children) for m in marks
    )
    outside /= 1e3
    rows.append([OUTSIDE_CPU, math.nan, outside, 100 * outside / wall, outside, math.nan, math.nan, math.nan])
    return rows


def _cuda_rows(trace: Trace) -> list[list]:
    n, wall = trace.repeat, trace.mean_wall_ms
    rows = []
    for e in trace.prof.key_averages():
        if e.device_type != DeviceType.CUDA or e.key == MARK:
            continue
        ms = e.self_device_time_total / 1e3 / n
        rows.append([e.key, e.count / n, ms, 100 * ms / wall, ms, math.nan, math.nan, math.nan])
    idle = max(0.0, wall - sum(r[2] for r in rows))
    rows.append([OUTSIDE_GPU, math.nan, idle, 100 * idle / wall, idle, math.nan, math.nan, math.nan])
    return rows


def input_bytes(prof: profile) -> dict[str, int]:
    """Per operator name, the bytes its tensor inputs span over the session (the recorded
    shapes times the element size); operators with an input of unknown size are left out."""
    out: dict[str, int] = {}
    unknown: set[str] = set()
    for e in prof.profiler.kineto_results.events():
        if e.device_type() != DeviceType.CPU or e.name() == "[memory]":
            continue
        total = 0
        for shape, dtype in zip(e.shapes(), e.dtypes(), strict=False):
            if dtype in ITEMSIZE:
                total += math.prod(shape) * ITEMSIZE[dtype]
            elif dtype not in NOT_TENSORS:  # a tensor list, or a type not in the table
                unknown.add(e.name())
        out[e.name()] = out.get(e.name(), 0) + total
    return {name: n for name, n in out.items() if name not in unknown}

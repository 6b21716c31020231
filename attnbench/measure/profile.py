"""A trace of a case's timed call and its operator breakdown, from torch.profiler (kineto).

The call is the harness's own `Workload.call`, warm, traced `repeat` times inside one
profiler session, each under a `attnbench.call` range: the trace opens in Perfetto or
`chrome://tracing` (CPU operators with their input shapes; on CUDA also the kernels, Triton's
included, and the copies). The breakdown is the profiler's `key_averages`, per call:

- CPU: every operator by self time, with its calls, its share of the call's wall time, its
  FLOPs (the profiler's `with_flops`, in a call of its own: matmuls, convolutions, some
  elementwise ops) and the bytes its tensor inputs span (from the recorded shapes and dtypes;
  views count what they view, so an upper bound on what the op reads). One more row,
  `(outside any operator)`, is the call's time in no operator at all: Python, the interpreter
  between ops, a loop's own cost (Holistic Trace Analysis calls its GPU form idle time).
- CUDA: every kernel, copy and fill by device time; `(GPU idle)` is the call's wall time
  in no kernel.

`top_level_breakdown` is the other view: the operators the call runs itself, each with all
under it. The profiler costs microseconds per operator, so the traced call is slower than the
timed one by that per op; `TRACE_TOLERANCE` is what the profile's check allows, and a call of
many small operators can exceed it (a flag in the profile, not an error).
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
    """A profiler session of `repeat` calls and each call's wall time, and the FLOPs of one
    call per (operator, input shapes), counted in a session of their own."""

    prof: profile
    walls_ms: tuple[float, ...]
    device: str
    flops: dict[tuple[str, str], float]

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
    """Trace `repeat` calls of `work` (already warm) in one profiler session, then count one
    call's FLOPs in another: `with_flops` costs tens of microseconds per operator (measured on
    the 2-core VM, one thread: the delta rule at N = 1024 took 56 ms a call traced with shapes,
    85 ms with FLOPs too, 45 ms untraced), which would take the traced time far from the timed."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with _quiet_kineto(), profile(activities=activities, record_shapes=True) as prof:
        for _ in range(repeat):
            work.reset()
            with record_function(MARK):
                work.call()
                if device == "cuda":
                    torch.cuda.synchronize()  # the range ends when the call's kernels do
    walls = tuple(e.cpu_time_total / 1e3 for e in _marks(prof))
    work.reset()
    with (
        _quiet_kineto(),
        profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as counted,
    ):
        work.call()
    flops = {
        (e.key, str(e.input_shapes)): float(e.flops)
        for e in counted.key_averages(group_by_input_shape=True)
        if e.flops
    }
    return Trace(prof, walls, device, flops)


def _marks(prof: profile) -> list:
    return [e for e in prof.events() if e.name == MARK and e.device_type == DeviceType.CPU]


def op_breakdown(trace: Trace, *, by_shape: bool = False) -> pd.DataFrame:
    """One row per operator (CPU) or kernel (CUDA), per call, largest self time first, with
    the time in none of them as a row of its own; columns `OP_COLUMNS`. `by_shape`: one row
    per operator and the shapes of its inputs (CPU), in an `input_shapes` column after `op`
    (the profiler's `group_by_input_shape`), which tells apart the calls an op name lumps."""
    rows = _cuda_rows(trace) if trace.device == "cuda" else _cpu_rows(trace, by_shape)
    columns = ["op", "input_shapes", *OP_COLUMNS[1:]] if by_shape else OP_COLUMNS
    if by_shape and trace.device == "cuda":
        rows = [[r[0], "", *r[1:]] for r in rows]
    table = pd.DataFrame(rows, columns=columns).sort_values("self_ms", ascending=False, kind="stable")
    return table.reset_index(drop=True)


def _cpu_rows(trace: Trace, by_shape: bool) -> list[list]:
    n, wall = trace.repeat, trace.mean_wall_ms
    bytes_in = input_bytes(trace.prof)
    rows = []
    for e in trace.prof.key_averages(group_by_input_shape=by_shape):
        if e.key == MARK or e.device_type != DeviceType.CPU:
            continue
        self_ms = e.self_cpu_time_total / 1e3 / n
        shapes = str(e.input_shapes)
        counted = [f for (op, s), f in trace.flops.items() if op == e.key and (s == shapes or not by_shape)]
        gflop = sum(counted) / 1e9 if counted else math.nan  # per call already
        nbytes = bytes_in.get((e.key, shapes)) if by_shape else _by_name(bytes_in, e.key)
        row = [
            e.key,
            e.count / n,
            self_ms,
            100 * self_ms / wall,
            e.cpu_time_total / 1e3 / n,
            gflop,
            gflop / self_ms * 1e3 if counted and self_ms > 0 else math.nan,
            nbytes / 1e6 / n if nbytes is not None else math.nan,
        ]
        rows.append([row[0], shapes, *row[1:]] if by_shape else row)
    # the time of each call under no operator: its wall time less its top-level operators'
    within = [m.cpu_time_total - sum(c.cpu_time_total for c in m.cpu_children) for m in _marks(trace.prof)]
    outside = statistics.fmean(within)
    outside /= 1e3
    row = [OUTSIDE_CPU, math.nan, outside, 100 * outside / wall, outside, math.nan, math.nan, math.nan]
    rows.append([row[0], "", *row[1:]] if by_shape else row)
    return rows


def _by_name(bytes_in: dict[tuple[str, str], int | None], name: str) -> int | None:
    """An operator's input bytes over all its shapes; None when any of them is unknown."""
    sizes = [n for (op, _), n in bytes_in.items() if op == name]
    return None if not sizes or None in sizes else sum(sizes)


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


def top_level_breakdown(trace: Trace) -> pd.DataFrame:
    """The operators the call itself runs (its direct children in the profiler's tree), each
    with everything under it, per call, largest first: what a line of the variant's Python
    costs (`aten::roll` with the `cat` it does, a triangular solve with its copy into column
    order), where `op_breakdown` charges the time to the innermost operator. Columns `op`,
    `calls`, `total_ms`, `share_pct` (CUDA: the device time of the kernels under each)."""
    n, wall = trace.repeat, trace.mean_wall_ms
    cuda = trace.device == "cuda"
    groups: dict[str, tuple[int, float]] = {}
    for mark in _marks(trace.prof):
        for op in mark.cpu_children:
            count, total = groups.get(op.name, (0, 0.0))
            groups[op.name] = (count + 1, total + (op.device_time_total if cuda else op.cpu_time_total))
    rows = [
        [name, count / n, total / 1e3 / n, 100 * total / 1e3 / n / wall]
        for name, (count, total) in groups.items()
    ]
    rest = wall - sum(r[2] for r in rows)
    rows.append([OUTSIDE_GPU if cuda else OUTSIDE_CPU, math.nan, rest, 100 * rest / wall])
    table = pd.DataFrame(rows, columns=["op", "calls", "total_ms", "share_pct"])
    return table.sort_values("total_ms", ascending=False, kind="stable").reset_index(drop=True)


def input_bytes(prof: profile) -> dict[tuple[str, str], int | None]:
    """Per (operator, its input shapes as the profiler prints them), the bytes its tensor
    inputs span over the session: the recorded shapes times the element sizes; None where an
    input's size is not known (a list of tensors, a type not in `ITEMSIZE`)."""
    out: dict[tuple[str, str], int | None] = {}
    for e in prof.profiler.kineto_results.events():
        if e.device_type() != DeviceType.CPU or e.name() == "[memory]":
            continue
        total: int | None = 0
        for shape, dtype in zip(e.shapes(), e.dtypes(), strict=False):
            if dtype in ITEMSIZE and total is not None:
                total += math.prod(shape) * ITEMSIZE[dtype]
            elif dtype not in NOT_TENSORS:
                total = None
        key = (e.name(), str(e.shapes()))
        before = out.get(key, 0)
        out[key] = None if before is None or total is None else before + total
    return out

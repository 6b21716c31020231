"""Memory over the course of one call: every allocation and free in order, each with the
operator and the Python function that made it, and what is live at the peak. It answers
*when* in a call the peak of `attnbench.measure.memory` is reached and *what* holds it.

CPU: the same profiler memory records `peak_bytes_cpu` sums (`profile_memory=True`), read
from the profiler's event tree, where each record sits under the operator that allocated or
freed it and, with `with_stack=True`, under the Python frames that called that operator. So
the timeline's peak is the harness's exact peak (the tests check it) and every byte is named.
The event tree is torch's experimental API (`torch.profiler._memory_profiler` is built on it);
the tests pin its agreement with the harness's peak, so a torch that changes it fails there.
Python tracing slows the call down: the time axis is the profiled call's, not the timed one's.

CUDA: `torch.cuda.memory._record_memory_history` during the call and its snapshot's trace
(`alloc` and `free_completed` entries with their Python frames), which is also saved for
PyTorch's memory viewer (https://pytorch.org/memory_viz).
"""

from __future__ import annotations

import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile, record_function

from attnbench.measure.memory import _quiet_kineto

MARK = "attnbench.memory"  # the profiler range around the call
LIBRARIES = ("torch/", sysconfig.get_paths()["stdlib"])  # frames that name no user code


@dataclass(frozen=True)
class MemoryEvent:
    time_ms: float  # since the call started
    nbytes: int  # allocated (positive) or freed (negative)
    live: int  # bytes live after it, beyond what existed before the call
    op: str  # the outermost operator of the call around it ("" when none: Python freed it)
    site: str  # the innermost user function on the Python stack, e.g. `linear/forms.py:chunk_sum`


@dataclass(frozen=True)
class MemoryTimeline:
    """What one call allocates and frees, in order. `live_at_peak`: the allocations made
    during the call and still live at the peak, per (op, site): their bytes and how many
    they are, largest first."""

    events: tuple[MemoryEvent, ...]
    live_at_peak: tuple[tuple[str, str, int, int], ...]  # (op, site, bytes, allocations)
    method: str

    @property
    def peak(self) -> int:
        """The most bytes live at once: `peak_bytes` of the same call."""
        return max(0, *(e.live for e in self.events))

    @property
    def peak_event(self) -> MemoryEvent | None:
        """The allocation that reached the peak (the first, when it is reached twice)."""
        return max(self.events, key=lambda e: e.live) if self.peak > 0 else None

    def to_frame(self) -> pd.DataFrame:
        columns = ["time_ms", "nbytes", "live", "op", "site"]
        return pd.DataFrame([[getattr(e, c) for c in columns] for e in self.events], columns=columns)

    def summary(self) -> dict:
        peak = self.peak_event
        return {
            "method": self.method,
            "peak_bytes": self.peak,
            "peak_at_ms": peak.time_ms if peak else None,
            "peak_op": peak.op if peak else None,
            "peak_site": peak.site if peak else None,
            "events": len(self.events),
            "live_at_peak": [
                {"op": op, "site": site, "bytes": n, "tensors": k} for op, site, n, k in self.live_at_peak
            ],
        }


def memory_timeline(fn: Callable[[], object], device: str, *, snapshot: Path | None = None) -> MemoryTimeline:
    """The timeline of one call of `fn` on `device`; on CUDA the raw snapshot goes to `snapshot`."""
    return cuda_timeline(fn, snapshot) if device == "cuda" else cpu_timeline(fn)


def cpu_timeline(fn: Callable[[], object]) -> MemoryTimeline:
    with (
        _quiet_kineto(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True, with_stack=True) as prof,
        record_function(MARK),
    ):
        fn()
    records: list[tuple[int, int, int, str, str]] = []  # (time ns, bytes, pointer, op, site)
    starts: list[int] = []  # when the call began (the range around it)

    def walk(node, op: str, site: str) -> None:
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            if fields.device.type == "cpu":
                records.append((node.start_time_ns, fields.alloc_size, fields.ptr, op, site))
            return
        if node.name == MARK:
            starts.append(node.start_time_ns)
        elif node.tag == _EventType.TorchOp and not op:
            op = node.name
        elif node.tag == _EventType.PyCall:
            site = user_site(node.name) or site
        for child in node.children:
            walk(child, op, site)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, "", "")
    records.sort(key=lambda r: r[0])
    t0 = starts[0] if starts else (records[0][0] if records else 0)
    return _timeline(
        [((t - t0) / 1e6, n, ptr, op, site) for t, n, ptr, op, site in records], "cpu profiler memory events"
    )


def user_site(frame: str) -> str | None:
    """`linear/forms.py:chunk_sum` for a profiler Python frame such as
    `/…/attnbench/variants/linear/forms.py(86): chunk_sum`; None for library code,
    modules (`nn.Module: X`) and comprehensions, which name no function of the variant."""
    path, sep, func = frame.partition("): ")
    if not sep or func.startswith("<") or frame.startswith("nn.Module"):
        return None
    path = path.rsplit("(", 1)[0]
    if path.startswith(LIBRARIES) or "/torch/" in path or "site-packages/torch" in path:
        return None
    file = Path(path)
    return f"{file.parent.name}/{file.name}:{func}"


def cuda_timeline(fn: Callable[[], object], snapshot: Path | None = None) -> MemoryTimeline:
    """The allocator's own history of the call (Python frames, 100 000 entries at most)."""
    torch.cuda.synchronize()
    torch.cuda.memory._record_memory_history(max_entries=100_000, stacks="python")
    try:
        fn()
        torch.cuda.synchronize()
        snap = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    if snapshot is not None:
        import pickle

        snapshot.write_bytes(pickle.dumps(snap))
    trace = snap["device_traces"][torch.cuda.current_device()]
    entries = [e for e in trace if e["action"] in ("alloc", "free_completed")]
    t0 = entries[0].get("time_us", 0) if entries else 0
    records = []
    for i, e in enumerate(entries):
        frames = e.get("frames") or []
        user = [f for f in frames if _is_user(f["filename"])]
        site = f"{Path(user[0]['filename']).name}:{user[0]['line']} {user[0]['name']}" if user else ""
        t = (e["time_us"] - t0) / 1e3 if "time_us" in e else float(i)
        size = e["size"] if e["action"] == "alloc" else -e["size"]
        records.append((t, size, e["addr"], "", site))
    return _timeline(records, "torch.cuda.memory._record_memory_history")


def _is_user(filename: str) -> bool:
    return not (filename.startswith(LIBRARIES) or "/torch/" in filename or filename.startswith("<"))


def _timeline(records: list[tuple[float, int, int, str, str]], method: str) -> MemoryTimeline:
    """Running totals and what is live at the peak, from (time, bytes, pointer, op, site)."""
    events: list[MemoryEvent] = []
    live = 0
    for t, nbytes, _, op, site in records:
        live += nbytes
        events.append(MemoryEvent(t, nbytes, live, op, site))
    peak_index = max(range(len(events)), key=lambda i: events[i].live, default=-1)
    held: dict[int, tuple[int, str, str]] = {}  # pointer -> what the call allocated there
    for _, nbytes, ptr, op, site in records[: peak_index + 1]:
        if nbytes > 0:
            held[ptr] = (nbytes, op, site)
        else:
            held.pop(ptr, None)
    by_origin: dict[tuple[str, str], tuple[int, int]] = {}
    for nbytes, op, site in held.values():
        total, count = by_origin.get((op, site), (0, 0))
        by_origin[(op, site)] = (total + nbytes, count + 1)
    ranked = sorted(((op, site, n, c) for (op, site), (n, c) in by_origin.items()), key=lambda r: -r[2])
    return MemoryTimeline(tuple(events), tuple(ranked), method)

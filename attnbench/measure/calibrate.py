"""This machine's own ceilings: dense matmul rate per dtype and memory-copy bandwidth, on the
device and with the thread count a case uses. Cached per machine, so `% of peak` in a result
means the same on a laptop and on an H100.

CPU: a 2048² matmul (smaller for a dtype without fast kernels) and a 256 MiB copy timed with
torch.utils.benchmark at the case's thread count. GPU: an 8192² matmul and a 1 GiB copy
timed with triton.testing.do_bench. Copy bandwidth counts bytes read plus bytes written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field

import torch

from attnbench.env import cache_dir, cache_lock, cpu_model, device_name
from attnbench.measure.timing import time_fn


@dataclass
class Ceilings:
    device: str
    device_name: str
    threads: int
    matmul_flops: dict[str, float] = field(default_factory=dict)  # FLOP/s per dtype
    copy_bytes_per_s: float | None = None
    torch: str = torch.__version__
    measured_at: str = ""

    @property
    def key(self) -> str:
        return machine_key(self.device, self.threads)


def machine_key(device: str, threads: int) -> str:
    host = os.uname().nodename if hasattr(os, "uname") else "host"
    return f"{host}|{cpu_model()}|{device}:{device_name(device)}|threads={threads}|torch={torch.__version__}"


def measure_matmul(device: str, dtype: str, threads: int) -> float:
    """Dense matmul rate. The size adapts to the rate a 512² probe shows, so a dtype the CPU
    has no fast kernel for (fp16 on many x86 CPUs: ~2 GFLOP/s) costs seconds, not minutes."""
    n = 8192 if device == "cuda" else 2048
    if device == "cpu":
        probe = _matmul_rate(device, dtype, threads, 512, min_run_time=0.05)
        while n > 512 and 2 * n**3 / probe > 0.05:  # aim at ≤ 50 ms a call
            n //= 2
    return _matmul_rate(device, dtype, threads, n, min_run_time=0.3)


def _matmul_rate(device: str, dtype: str, threads: int, n: int, *, min_run_time: float) -> float:
    gen = torch.Generator().manual_seed(0)  # not the global generator: seeded runs follow
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=getattr(torch, dtype))
    timing = time_fn(lambda: torch.mm(a, b), device=device, threads=threads, min_run_time=min_run_time)
    return 2 * n**3 / timing.median_s


def measure_copy(device: str, threads: int) -> float:
    nbytes = (1 << 30) if device == "cuda" else (256 << 20)
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), device=device, threads=threads, min_run_time=0.3)
    return 2 * nbytes / timing.median_s


def _load() -> dict:
    path = cache_dir() / "calibration.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(entries: dict) -> None:
    path = cache_dir() / "calibration.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two writers never share a temporary file
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    tmp.replace(path)


def ceilings(
    device: str, threads: int, dtypes: tuple[str, ...] = (), *, measure: bool = True, force: bool = False
) -> Ceilings | None:
    """Cached ceilings for (this machine, device, threads), measuring any dtype not yet there
    (or all, with `force`). Returns None when nothing is cached and `measure` is False."""
    entries = _load()
    key = machine_key(device, threads)
    cached = entries.get(key)
    ceil = Ceilings(**cached) if cached and not force else Ceilings(device, device_name(device), threads)
    missing = [d for d in dtypes if d not in ceil.matmul_flops]
    need_copy = ceil.copy_bytes_per_s is None
    if not measure:
        return ceil if cached else None
    if not missing and not need_copy:
        return ceil
    # one worker of this machine measures at a time (two at once would each slow the other and
    # record ceilings too low); one that waited may find what it needs measured meanwhile
    with cache_lock("calibration-" + hashlib.sha256(key.encode()).hexdigest()[:16]):
        if not force and (again := _load().get(key)):
            ceil = Ceilings(**again)
            missing = [d for d in dtypes if d not in ceil.matmul_flops]
            need_copy = ceil.copy_bytes_per_s is None
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for dtype in missing:
                ceil.matmul_flops[dtype] = measure_matmul(device, dtype, threads)
            if need_copy:
                ceil.copy_bytes_per_s = measure_copy(device, threads)
        finally:
            torch.set_num_threads(previous)
        if missing or need_copy:
            ceil.measured_at = time.strftime("%Y-%m-%dT%H:%M:%S")
            entries = _load()  # another machine sharing the folder may have written meanwhile
            entries[key] = asdict(ceil)
            _save(entries)
    return ceil

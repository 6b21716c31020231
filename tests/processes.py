"""Looking at processes from a test (Linux /proc): a run's children, whether one still runs,
and waiting for something to happen, with a limit, never timing it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            kids += [int(p) for p in task.read_text().split()]
    return kids


def is_worker(pid: int) -> bool:
    """A case worker, not multiprocessing's resource tracker (also a child of the run)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    """The process still runs (a zombie nobody reaped has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(predicate, limit_s: float = 60.0) -> bool:
    """Poll `predicate` until it holds (True) or `limit_s` passes (False)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())

"""A worker never outlives the sweep that started it.

A worker kept running after its parent died (SIGTERM, SIGKILL, a crash of the parent) goes on
computing a case nobody will read, holding cores and memory: issue 16 found one alive 18 s
after `attnbench run` was terminated. Two guards, because neither covers every case alone:

- `PR_SET_PDEATHSIG` (Linux): the kernel sends the worker SIGKILL when the thread that started
  it exits, whatever stops the parent and whatever the worker is doing. Only set when that
  thread is the parent's main thread (which lives as long as the process); a worker started
  from another thread would otherwise die with that thread.
- a watchdog thread that checks every `POLL_S` seconds whether the worker's parent is still
  the process that started it (a dead parent's children are re-parented), for other systems
  and for workers started from other threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 1.0


def die_with_parent(parent_pid: int, *, parent_main_thread: bool) -> None:
    """Arrange for this process to exit when `parent_pid` does; exit now if it already has."""
    if parent_main_thread and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still holds
    if os.getppid() != parent_pid:  # the parent died before the guard was set
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="attnbench-lifeline", daemon=True).start()


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    os._exit(1)

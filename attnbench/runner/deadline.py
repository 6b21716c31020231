"""A time limit for a case run in this process (the inline executor).

The subprocess executor stops a hung case by killing its worker; in-process there is nothing
to kill, so a timer (`setitimer`, SIGALRM) raises `CaseTimeout` into the case where it is.
`CaseTimeout` is a BaseException, so the `except Exception` that turns a case's failures into
statuses lets it through to the executor, which records `timeout`. Python acts on a signal
between bytecodes: a single long native call (one huge matmul) ends before the case stops.
Signals reach only the main thread (and SIGALRM exists on POSIX only): elsewhere no limit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class CaseTimeout(BaseException):
    """The case ran past its time limit."""


def _raise_timeout(signum: int, frame: object) -> None:
    raise CaseTimeout()


def can_limit() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `CaseTimeout` in the block once `seconds` have passed (where `can_limit()`)."""
    if not can_limit():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

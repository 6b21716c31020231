"""A time limit for a case run in this process (the inline executor).

The subprocess executor stops a hung case by killing its worker; in-process there is nothing
to kill, so a timer (`setitimer`, SIGALRM) raises `CaseTimeout` into the case where it is.
`CaseTimeout` is a BaseException, so the `except Exception` that turns a case's failures into
statuses lets it through to the executor, which records `timeout`.

Two traps, each seen here: an exception raised while Python runs a finaliser (a weakref
callback inside torch) is dropped, with a traceback printed, so the timer fires again every
`RETRY_S` until the case has stopped and a dropped `CaseTimeout` is not printed; and one raised
inside this module's own clean-up would leave the timer running, so the handler never raises
there. Python acts on a signal between bytecodes: one
long native call (a huge matmul) ends before the case stops. Signals reach only the main
thread (and SIGALRM exists on POSIX only): elsewhere there is no limit.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

RETRY_S = 0.25


class CaseTimeout(BaseException):
    """The case ran past its time limit."""


def _raise_timeout(signum: int, frame: FrameType | None) -> None:
    if frame is not None and frame.f_code.co_filename == __file__:
        return  # stopping the timer: the case is over, and the clean-up must run whole
    raise CaseTimeout()


def can_limit() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


class Deadline:
    """`with Deadline(seconds):` raises `CaseTimeout` in the block once `seconds` have passed
    (where `can_limit()`), and again every `RETRY_S` until the block is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = False
        self.previous: object = None
        self.hook = sys.unraisablehook

    def __enter__(self) -> Deadline:
        if can_limit():
            self.previous = signal.signal(signal.SIGALRM, _raise_timeout)
            self.hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
            signal.setitimer(signal.ITIMER_REAL, self.seconds, RETRY_S)
            self.armed = True
        return self

    def _unraisable(self, unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, CaseTimeout):  # ours is raised again: silence
            self.hook(unraisable)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            sys.unraisablehook = self.hook
            self.armed = False

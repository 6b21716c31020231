"""How attnbench reacts to being stopped.

SIGTERM (`kill`, a scheduler's stop, a CI job's timeout) is handled like Ctrl-C: it raises
`Terminated`, a `KeyboardInterrupt`, where the program is, so every `except KeyboardInterrupt`
that keeps a run's finished results and prints how to resume serves both; the exit code says
which signal it was (130 for SIGINT, 143 for SIGTERM, as a shell reports them). A results
record being written is finished first (`deferred`), so a stop never leaves half a line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def exit_code(stop: KeyboardInterrupt) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


def describe(stop: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"


_TERMINATED = [False]  # a SIGTERM arrived while `sigterm_as_interrupt` was in force


def _raise_terminated(signum: int, frame: object) -> None:
    _TERMINATED[0] = True
    raise Terminated()


def as_received(stop: KeyboardInterrupt) -> KeyboardInterrupt:
    """`stop` as the signal that caused it: code that catches a KeyboardInterrupt and raises
    a plain one in its place (Ray's `wait` and `get` do) would otherwise report a SIGTERM as
    Ctrl-C."""
    return Terminated() if _TERMINATED[0] and not isinstance(stop, Terminated) else stop


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated`; the previous handler is restored after (so
    a caller of `attnbench.cli.main` in-process keeps its own). Signals reach only the main
    thread, so elsewhere this does nothing."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _TERMINATED[0] = False
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done (writing one record): they arrive,
    and raise, right after it."""
    if not (_in_main_thread() and hasattr(signal, "pthread_sigmask")):
        yield
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

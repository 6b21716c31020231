"""Executors run one case and return its outcome: `inline` in this process (fast, for tests
and debugging), `subprocess` in a reused worker process, so an OOM, a crash or a hang
becomes a status and the sweep goes on; `ray` (`ray_executor.py`) on a Ray cluster, many at once.

An executor is a class registered with `@register_executor(name)` anywhere under
`attnbench/runner/` (or in a plugin), constructed with the suite's measurement settings and
`timeout_s`, `mem_limit`, `log_path`, plus the options it names in `options` (command-line
flags such as `--address`); `run(case)` returns an `Outcome` and never raises for what the
case does; `close()` releases its workers. An executor that runs cases in parallel also has
`run_many(cases)`, which takes cases from the iterable as it has room for them and yields
`(case, outcome)` as each finishes; the sweep uses it where it exists. A classmethod
`preflight(**options)`, where there is one, raises a UserError before anything runs (a package
missing, a cluster that does not answer); it gets the executor's own options.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from attnbench.cases import Case
from attnbench.discovery import Catalog
from attnbench.env import case_env
from attnbench.errors import UserError
from attnbench.measure.allocator import release_free_memory, steady_cpu_allocator
from attnbench.measure.settings import MeasureSettings
from attnbench.outcome import Outcome
from attnbench.runner.deadline import CaseTimeout, Deadline
from attnbench.runner.deaths import OomCounters, classify_death, describe_exit
from attnbench.runner.execute import execute
from attnbench.runner.worker import worker_from

STARTUP_TIMEOUT_S = 300.0


class Executor(Protocol):
    options: ClassVar[tuple[str, ...]]  # the executor's own options, by keyword

    def run(self, case: Case) -> Outcome: ...
    def close(self) -> None: ...


E = TypeVar("E", bound=type)
EXECUTORS: Catalog[type] = Catalog("executor", ("attnbench.runner",), "attnbench.executors")


def register_executor(name: str) -> Callable[[E], E]:
    def decorate(cls: E) -> E:
        EXECUTORS.add(name, cls, same=lambda a, b: a.__qualname__ == b.__qualname__)
        return cls

    return decorate


@register_executor("inline")
class InlineExecutor:
    """Each case in this process: no isolation from a crash, no start-up cost. A case past
    `timeout_s` is stopped by a timer (see `Deadline`) and recorded `timeout`."""

    options = ()

    def __init__(self, settings: MeasureSettings, *, timeout_s: float | None = None, **_: object) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        steady_cpu_allocator()

    def run(self, case: Case) -> Outcome:
        start = time.perf_counter()
        try:
            with Deadline(self.timeout_s) if self.timeout_s else contextlib.nullcontext():
                outcome = execute(case, self.settings)
        except CaseTimeout:
            outcome = failed(
                case, "timeout", f"no result within {self.timeout_s:g} s; stopped", _since(start)
            )
        release_free_memory()  # as the worker does between cases
        return outcome

    def close(self) -> None:
        pass


@register_executor("subprocess")
class SubprocessExecutor:
    """One worker process at a time, kept across cases. A case gets `timeout_s` seconds of
    the worker's time (start-up not included); past it the worker is killed and replaced. A
    worker that dies mid-case (not by the OOM killer) is replaced and the case rerun once, so
    a kill from outside costs no result; a second death records `crash`."""

    options = ()

    def __init__(
        self,
        settings: MeasureSettings,
        *,
        timeout_s: float,
        mem_limit: int | None = None,
        log_path: str | Path | None = None,
        source: str | Path | None = None,
    ) -> None:
        """`source`: run the cases with the attnbench of that checkout instead of this one."""
        self.source = str(source) if source else None
        self.settings = settings
        self.timeout_s = timeout_s
        self.mem_limit = mem_limit
        self.log_path = str(log_path) if log_path else None
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = None
        self._conn = None
        self._busy = False  # a case is in flight: closing must not wait for it
        self.starts = 0

    def _start(self) -> None:
        """A ready worker; one that dies while starting is started once more (it may have
        been killed from outside), a second death is a UserError naming how it ended."""
        how = self._try_start()
        if how is not None:
            how = self._try_start()
        if how is not None:
            raise UserError(f"the worker process {how} while starting, twice; see {self.log_path}")

    def _try_start(self) -> str | None:
        """Start a worker and wait for it to be ready: None, or how it ended meanwhile."""
        parent, child = self._ctx.Pipe()
        lifeline = (os.getpid(), threading.current_thread() is threading.main_thread())
        proc = self._ctx.Process(
            target=worker_from,
            daemon=True,
            name="attnbench-worker",
            args=(self.source, lifeline, child, self.settings.to_dict(), self.mem_limit, self.log_path),
        )
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self.starts += 1
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise UserError(f"the worker process did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            parent.recv()  # {"ready": pid}
        except EOFError:
            proc.join(timeout=10)
            how = describe_exit(proc.exitcode)
            self._kill()
            return how
        return None

    def run(self, case: Case) -> Outcome:
        outcome = self._attempt(case)
        if outcome.status != "crash":
            return outcome
        again = self._attempt(case)  # on a fresh worker
        if again.status == "crash":
            again.error = f"{outcome.error}; rerun on a fresh worker: {again.error}"
        else:
            again.flags = [*again.flags, "rerun"]
        return again

    def _attempt(self, case: Case) -> Outcome:
        """The case on the current worker (started if need be); `crash` if the worker died."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        before = OomCounters.read()
        start = time.perf_counter()
        self._busy = True
        try:
            self._conn.send(case.to_dict())
            if self._conn.poll(self.timeout_s):
                outcome = Outcome.from_dict(self._conn.recv())
                self._busy = False
                return outcome
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return self._died(case, before, _since(start))
        self._kill()
        return failed(case, "timeout", f"no result within {self.timeout_s:g} s; worker killed", _since(start))

    def _died(self, case: Case, before: OomCounters, wall_s: float) -> Outcome:
        self._proc.join(timeout=10)
        status, reason = classify_death(self._proc.exitcode, before)
        self._kill()
        return failed(case, status, reason + self._log_tail(), wall_s)

    def _log_tail(self) -> str:
        """The worker log's last line, which often says why it died."""
        try:
            lines = [ln for ln in Path(self.log_path).read_text(errors="replace").splitlines() if ln.strip()]
        except (OSError, TypeError):
            return ""
        return f"; log: {lines[-1][:200]}" if lines else ""

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._busy = False

    def close(self) -> None:
        """Let an idle worker exit; kill one still running a case (the sweep was stopped)."""
        if self._proc is not None and self._proc.is_alive() and not self._busy:
            try:
                self._conn.send(None)
                self._proc.join(timeout=10)
            except (BrokenPipeError, OSError):
                pass
        self._kill()


def _since(start: float) -> float:
    return time.perf_counter() - start


def failed(case: Case, status: str, error: str, wall_s: float) -> Outcome:
    """The outcome of a case whose worker could not report one (killed, crashed, hung)."""
    env = {**case_env(case.device), "threads": case.threads}
    return Outcome(status, error, env=env, wall_s=round(wall_s, 3))


def check_executor(kind: str, options: dict[str, Any]) -> None:
    """Refuse, before anything runs, an option `kind` does not take (`--address` without
    `--executor ray`) and an executor that cannot run here (its `preflight`)."""
    cls = EXECUTORS.get(kind)
    extra = sorted(k for k, v in options.items() if v is not None and k not in getattr(cls, "options", ()))
    if extra:
        flag = "--" + extra[0].replace("_", "-")
        takers = sorted(n for n, c in EXECUTORS.items().items() if extra[0] in getattr(c, "options", ()))
        hint = f": it is an option of --executor {' or '.join(takers)}" if takers else ""
        raise UserError(f"{flag} does not apply to --executor {kind}{hint}")
    if hasattr(cls, "preflight"):
        cls.preflight(**{k: v for k, v in options.items() if k in getattr(cls, "options", ())})


def make_executor(
    kind: str,
    settings: MeasureSettings,
    *,
    timeout_s: float,
    mem_limit: int | None,
    log_path: str | Path | None,
    **options: Any,
) -> Executor:
    """The executor `kind`, with those of `options` that are set (the CLI passes None for a
    flag not given)."""
    cls = EXECUTORS.get(kind)
    given = {k: v for k, v in options.items() if v is not None}
    return cls(settings, timeout_s=timeout_s, mem_limit=mem_limit, log_path=log_path, **given)

"""The `ray` executor: a sweep's cases on a Ray cluster, as many at once as it has room for.

    attnbench run --suite speed --executor ray                    # a local Ray instance
    attnbench run --suite retrieval-paper --executor ray --address auto --max-parallel 8

Why actors that drive subprocess workers, not a Ray task per case: a task would either run the
case in Ray's own worker process (no memory cap, and one segfault or illegal memory access
takes down a process Ray reuses) or start a fresh worker per case (2–8 s of imports each). So
each actor (`CaseWorker`) reserves what its cases are timed on (`threads` CPUs for a CPU case,
one GPU and one CPU for a CUDA case: Ray then hands out every CPU and GPU to one case at a
time) and holds an ordinary `SubprocessExecutor` on its node. Cases therefore run exactly as
with `--executor subprocess`: the same worker, timeout, memory cap, status rules (oom, crash
after one rerun on a fresh worker, timeout) and exact CPU memory numbers, and the worker is
reused across the cases an actor gets. Actors are reused across cases of the same shape.

What else can fail, and what happens:
- the actor process dies (killed, Ray's memory monitor): its worker dies with it
  (`lifeline`), the case is rerun once on a new actor, and a second death records `crash`;
- its node leaves the cluster: the case is rerun elsewhere (up to `MAX_NODE_LOSSES` times)
  and nothing finished is lost, since each result is in the results file as it reaches here;
- the sweep is stopped (Ctrl-C, SIGTERM): `close` kills every actor, which cancels what they
  were running, and the results file holds the finished cases for `--resume`.

Each outcome's `env` says where it ran: the node's `hostname` and `device_name` (from the
worker, as always) and `ray_node_ip`, `ray_node_id`. Ray is imported only here, only when
this executor is used: it is the optional extra `attnbench[ray]`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import signals
from attnbench.cases import Case
from attnbench.discovery import PLUGINS_ENV
from attnbench.env import CACHE_ENV
from attnbench.errors import UserError
from attnbench.measure.settings import MeasureSettings
from attnbench.outcome import Outcome
from attnbench.runner.executors import SubprocessExecutor, failed, register_executor

INSTALL = "pip install 'attnbench[ray]'"
OBJECT_STORE_BYTES = 128 << 20  # a local instance's; only outcomes (small dicts) go through it
MAX_NODE_LOSSES = 3  # reruns of one case whose node left the cluster, before it is `crash`
WAIT_S = 0.5  # how long the driver blocks at a time: a stop is handled within this
NODES_FRESH_S = 10.0  # how long a view of the cluster's nodes is trusted (nodes join and leave)
PASSED_ENV = (PLUGINS_ENV, CACHE_ENV, "PYTHONPATH")  # what the actors' workers need of ours
CONNECT_S = 10.0  # how long a cluster's address may take to accept a connection
NOWHERE = object()  # no node of the cluster can hold a case


def require_ray():
    """The `ray` module, or a UserError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@dataclass(frozen=True)
class Need:
    """What one case holds while it runs: CPUs and GPUs, as Ray counts them."""

    cpus: int
    gpus: int

    @classmethod
    def of(cls, case: Case, largest_node_cpus: int) -> Need:
        """`threads` CPUs for a CPU case (at most a whole node: more would run, oversubscribed,
        as it does under the subprocess executor), one GPU and one CPU for a CUDA case."""
        if case.device == "cuda":
            return cls(1, 1)
        return cls(max(1, min(case.threads, largest_node_cpus)), 0)

    def room(self, nodes: list[dict[str, float]]) -> int:
        """How many such cases the nodes (their total resources) hold at once."""
        count = 0
        for resources in nodes:
            fit = int(resources.get("CPU", 0) // self.cpus)
            if self.gpus:
                fit = min(fit, int(resources.get("GPU", 0) // self.gpus))
            count += fit
        return count


class CaseWorker:
    """The Ray actor: a subprocess executor on one node, reused across cases."""

    def __init__(
        self,
        settings: dict[str, Any],
        timeout_s: float,
        mem_limit: int | None,
        log_path: str | None,
        environ: dict[str, str],
        device: str,
        niceness: int,
    ) -> None:
        os.environ.update(environ)  # the workers it starts inherit them
        self.nice = renice(niceness)
        self.device = device
        self.log_path = node_log_path(log_path)
        self.executor = SubprocessExecutor(
            MeasureSettings.from_dict(settings),
            timeout_s=timeout_s,
            mem_limit=mem_limit,
            log_path=self.log_path,
        )

    def where(self) -> dict[str, Any]:
        """Its node: what a case's `env` says of where it ran, had the worker no answer."""
        import ray

        from attnbench.env import device_name

        return {
            "hostname": socket.gethostname(),
            "device_name": device_name(self.device),
            "ray_node_id": ray.get_runtime_context().get_node_id(),
            "ray_node_ip": ray.util.get_node_ip_address(),
        }

    def run(self, case: dict[str, Any]) -> dict[str, Any]:
        """The outcome and how many workers this actor started so far; a UserError (a worker
        that cannot start) as its message, which the driver raises again."""
        try:
            with main_script_hidden():
                outcome = self.executor.run(Case.from_dict(case))
        except UserError as e:
            return {"user_error": str(e)}
        where = self.where()  # the worker's env already names the host and the device
        outcome.env.update({k: where[k] for k in ("ray_node_id", "ray_node_ip")}, nice=self.nice)
        return {"outcome": outcome.to_dict(), "starts": self.executor.starts}


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """While workers may start: multiprocessing's spawn runs the parent's main script again in
    the child, and an actor's main script is Ray's `default_worker.py`, which would import
    all of Ray into every case worker (a second of start-up, and memory the case never uses)."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def renice(niceness: int) -> int:
    """Ray starts its workers at niceness 15 above its raylet (`worker_niceness`, so that its
    own daemons stay responsive), and a case worker inherits it: on a node where anything else
    runs, the case then gets the CPU last (seen here, load 7: 92 ms a call under the subprocess
    executor, 135 ms under Ray). The actor takes the niceness the sweep was started at instead
    (0 as usual; 19 under `nice -n 19`, which then holds on the nodes too) where allowed (root,
    or RLIMIT_NICE); the niceness the cases run at, either way, goes into each result's `env`."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)


def node_log_path(log_path: str | None) -> str | None:
    """The worker log beside the results where that folder is on this node and writable,
    else in this node's temporary folder."""
    if not log_path:
        return None
    path = Path(log_path)
    if os.access(path.parent, os.W_OK):
        return str(path)
    return str(Path(tempfile.gettempdir()) / f"attnbench-{path.name}")


@dataclass
class Slot:
    """One actor, as the driver sees it."""

    actor: Any
    need: Need
    where: Any  # the ObjectRef of its `where()`, resolved once it has started
    busy: bool = False
    starts: int = 0
    placed: bool = False  # it has started on a node (or failed to)
    node: dict[str, Any] = field(default_factory=dict)  # its `where()`, once placed


@dataclass
class Attempt:
    """A case and what happened to the actors that ran it before."""

    case: Case
    deaths: list[str] = field(default_factory=list)  # its actor died mid-case
    losses: list[str] = field(default_factory=list)  # its actor's node left the cluster
    start: float = 0.0

    def may_rerun(self) -> bool:
        return len(self.deaths) < 2 and len(self.losses) < MAX_NODE_LOSSES


@register_executor("ray")
class RayExecutor:
    """Cases on a Ray cluster (`address`; a local Ray instance without one), each case on an
    actor that reserves its CPUs or GPU and runs it in a subprocess worker; at most
    `max_parallel` at once (default: as many as the cluster holds)."""

    options = ("address", "max_parallel")

    @classmethod
    def preflight(cls, address: str | None = None, max_parallel: int | None = None) -> None:
        require_ray()
        check_reachable(address or os.environ.get("RAY_ADDRESS"))

    def __init__(
        self,
        settings: MeasureSettings,
        *,
        timeout_s: float,
        mem_limit: int | None = None,
        log_path: str | Path | None = None,
        address: str | None = None,
        max_parallel: int | None = None,
    ) -> None:
        self.ray = require_ray()
        self.settings, self.timeout_s, self.mem_limit = settings, timeout_s, mem_limit
        self.log_path = Path(log_path) if log_path else None
        self.max_parallel = max_parallel
        self._owns = connect(self.ray, address)
        self._actor_class = self.ray.remote(max_restarts=0)(CaseWorker)
        self._environ = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        self._slots: list[Slot] = []
        self._made = 0
        self._retired_starts = 0
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = -NODES_FRESH_S

    @property
    def starts(self) -> int:
        """Worker processes started, over every actor."""
        return self._retired_starts + sum(s.starts for s in self._slots)

    def run(self, case: Case) -> Outcome:
        return next(iter(self.run_many([case])))[1]

    def run_many(self, cases: Iterable[Case]) -> Iterator[tuple[Case, Outcome]]:
        """Each case's outcome as it finishes. A case is taken from `cases` only when there is
        room to start it, so a caller that stops handing them out stops the sweep."""
        try:
            yield from self._schedule(cases)
        except KeyboardInterrupt as stop:
            raise signals.as_received(stop) from None

    def _schedule(self, cases: Iterable[Case]) -> Iterator[tuple[Case, Outcome]]:
        feed = (Attempt(c) for c in cases)
        waiting: deque[Attempt] = deque()  # taken, not yet started: reruns, or no room yet
        running: dict[Any, tuple[Slot, Attempt]] = {}
        while True:
            while self.max_parallel is None or len(running) < self.max_parallel:
                attempt = waiting.popleft() if waiting else next(feed, None)
                if attempt is None:
                    break
                slot = self._slot_for(attempt.case)
                if slot is None:  # its kind of actor is at the cluster's capacity, all busy
                    waiting.appendleft(attempt)
                    break
                if slot is NOWHERE:
                    yield attempt.case, self._nowhere(attempt.case)
                    continue
                slot.busy, attempt.start = True, time.perf_counter()
                running[slot.actor.run.remote(attempt.case.to_dict())] = (slot, attempt)
            if not running:
                return
            self._unblock()
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            for ref in done:
                slot, attempt = running.pop(ref)
                outcome = self._collect(ref, slot, attempt)
                if outcome is None:
                    waiting.appendleft(attempt)
                else:
                    yield attempt.case, outcome

    def _collect(self, ref: Any, slot: Slot, attempt: Attempt) -> Outcome | None:
        """The case's outcome; None when its actor died and it is to be rerun."""
        try:
            answer = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            if getattr(e, "actor_init_failed", False):
                raise UserError(f"a Ray actor could not start attnbench: {_first_line(e)}") from None
            self._retire(slot)
            lost = bool(slot.node) and slot.node["ray_node_id"] not in self._alive_ids(fresh=True)
            where = f" on {slot.node['ray_node_ip']}" if slot.node else ""
            if lost:
                attempt.losses.append(f"its Ray node{where} left the cluster")
            else:
                attempt.deaths.append(f"its Ray actor{where} died ({_exit_detail(e)})")
            if attempt.may_rerun():
                return None
            wall_s = time.perf_counter() - attempt.start
            outcome = failed(attempt.case, "crash", "; ".join(attempt.losses + attempt.deaths), wall_s)
            outcome.env.update(slot.node)
            return outcome
        if "user_error" in answer:
            raise UserError(answer["user_error"])
        slot.busy, slot.starts = False, answer["starts"]
        outcome = Outcome.from_dict(answer["outcome"])
        if attempt.deaths or attempt.losses:
            outcome.flags = [*outcome.flags, "rerun"]
        return outcome

    def _slot_for(self, case: Case) -> Slot | object | None:
        """An idle actor for `case`, or a new one; None when there is no room now; NOWHERE
        when no node of the cluster can ever hold it."""
        need = Need.of(case, max((int(n.get("CPU", 0)) for n in self._alive()), default=0))
        for slot in self._slots:
            if slot.need == need and not slot.busy:
                return slot
        room = need.room(self._alive())
        if room == 0:
            return NOWHERE
        if sum(s.need == need for s in self._slots) >= room:
            return None
        for other in [s for s in self._slots if s.need != need and not s.busy]:
            self._retire(other)  # an idle actor of another kind holds what this one needs
        log = self.log_path and self.log_path.with_suffix(f".w{self._made}{self.log_path.suffix}")
        device = "cuda" if need.gpus else "cpu"
        actor = self._actor_class.options(num_cpus=need.cpus, num_gpus=need.gpus).remote(
            self.settings.to_dict(),
            self.timeout_s,
            self.mem_limit,
            log and str(log),
            self._environ,
            device,
            os.getpriority(os.PRIO_PROCESS, 0),
        )
        self._made += 1
        slot = Slot(actor, need, actor.where.remote())
        self._slots.append(slot)
        return slot

    def _unblock(self) -> None:
        """Learn where new actors started; while one still waits for room, retire the idle
        actors of other kinds, which may hold that room (else a sweep could wait forever)."""
        waiting = set()
        for slot in self._slots:
            if not slot.placed:
                slot.placed = bool(self.ray.wait([slot.where], timeout=0)[0])
                if slot.placed:
                    with contextlib.suppress(self.ray.exceptions.RayError):  # died: seen with its case
                        slot.node = self.ray.get(slot.where)
                else:
                    waiting.add(slot.need)
        for slot in [s for s in self._slots if not s.busy and waiting - {s.need}]:
            self._retire(slot)

    def _nowhere(self, case: Case) -> Outcome:
        what = "a GPU" if case.device == "cuda" else f"{case.threads} CPUs"
        return failed(case, "unsupported", f"no node of the Ray cluster has {what} for this case", 0.0)

    def _alive(self, fresh: bool = False) -> list[dict[str, float]]:
        """The total resources of each live node (refreshed every `NODES_FRESH_S`)."""
        if fresh or time.monotonic() - self._nodes_at > NODES_FRESH_S:
            self._nodes = [n for n in self.ray.nodes() if n.get("Alive")]
            self._nodes_at = time.monotonic()
            alive = {n["NodeID"] for n in self._nodes}
            for slot in [s for s in self._slots if s.node and s.node["ray_node_id"] not in alive]:
                if not slot.busy:
                    self._retire(slot)  # a busy one is seen dead when its case returns
        return [n.get("Resources", {}) for n in self._nodes]

    def _alive_ids(self, fresh: bool = False) -> set[str]:
        self._alive(fresh)
        return {n["NodeID"] for n in self._nodes}

    def _retire(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
            self._retired_starts += slot.starts
            with contextlib.suppress(Exception):  # already dead, or its node gone
                self.ray.kill(slot.actor, no_restart=True)

    def close(self) -> None:
        """Kill every actor (and with it any case in flight); leave a local instance we started."""
        for slot in list(self._slots):
            self._retire(slot)
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False


def connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a local instance; True when
    this call connected (so `close` disconnects). Already connected (a test, a notebook):
    that connection is used as it is. Ray's own default would join a cluster that `ray start`
    made on this machine; without an address we start our own, as `--help` says (`auto` joins
    that one)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    check_reachable(address)
    local = {} if address else {"include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES}
    address = address or "local"
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, **local)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = "a local Ray instance" if address == "local" else f"the Ray cluster at {address}"
        raise UserError(f"cannot reach {where}: {_first_line(e)}{auth_hint(address)}") from None
    finally:
        if main:  # ray.init sets its own SIGTERM handler; ours says how to resume
            signal.signal(signal.SIGTERM, handler)
    return True


def auth_hint(address: str) -> str:
    """Ray (2.5x on) starts clusters with token authentication; a driver joining one by its
    address is refused (seen here: `InvalidAuthToken`, then only `Failed to connect`) unless
    it holds the token and says so."""
    if address in ("local", "auto") or os.environ.get("RAY_AUTH_MODE"):
        return ""
    return " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here)"


def check_reachable(address: str | None) -> None:
    """A UserError when nothing listens at a cluster's `HOST:PORT` (or `ray://HOST:PORT`):
    `ray.init` would retry such an address for ever, printing a warning every few seconds.
    `auto` and no address are Ray's to resolve (it fails at once when there is nothing)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return  # another of Ray's forms: its own error
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_S).close()
    except OSError as e:
        raise UserError(
            f"cannot reach the Ray cluster at {address}: {e.strerror or e} "
            f"(start it there with `ray start --head --port {port}`)"
        ) from None


def _exit_detail(e: BaseException) -> str:
    """What Ray says of how an actor's process ended (`Worker unexpectedly exits with a
    connection error code 2`: killed), else the first line of its error."""
    found = re.search(r"Worker exit detail: ([^.]+)", str(e))
    return found.group(1).strip() if found else _first_line(e)


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__

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
worker, as always) and `ray_node_ip`, `ray_node_id`. The actor is in `ray_worker.py`, joining
a cluster in `ray_cluster.py`. Ray is imported only when this executor is used: it is the
optional extra `attnbench[ray]`.
"""

from __future__ import annotations

import contextlib
import os
import re
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
from attnbench.runner.executors import failed, register_executor
from attnbench.runner.ray_cluster import check_reachable, connect, first_line, require_ray
from attnbench.runner.ray_worker import CaseWorker

MAX_NODE_LOSSES = 3  # reruns of one case whose node left the cluster, before it is `crash`
WAIT_S = 0.5  # how long the driver blocks at a time: a stop is handled within this
NODES_FRESH_S = 10.0  # how long a view of the cluster's nodes is trusted (nodes join and leave)
PASSED_ENV = (PLUGINS_ENV, CACHE_ENV, "PYTHONPATH")  # what the actors' workers need of ours
NOWHERE = object()  # no node of the cluster can hold a case


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
                raise UserError(f"a Ray actor could not start attnbench: {first_line(e)}") from None
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


def _exit_detail(e: BaseException) -> str:
    """What Ray says of how an actor's process ended (`Worker unexpectedly exits with a
    connection error code 2`: killed), else the first line of its error."""
    found = re.search(r"Worker exit detail: ([^.]+)", str(e))
    return found.group(1).strip() if found else first_line(e)

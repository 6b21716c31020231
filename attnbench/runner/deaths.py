"""Why a worker died mid-case: the kernel's OOM killer, or something else.

Both the OOM killer and a person's `kill -9` end a process with SIGKILL, so the signal alone
cannot tell them apart (issue 16: an outside kill was recorded `oom`). The kernel counts its
OOM kills: in the memory cgroup (v2 `memory.events`, v1 `memory.oom_control`: `oom_kill`) and
machine-wide (`/proc/vmstat`: `oom_kill`). `OomCounters` reads them before a case; a SIGKILL
with a count risen since is an OOM kill, with none risen a kill from outside (`crash`), and
where no count can be read the cause is unknown and the case is recorded `crash`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _counter(path: Path, key: str = "oom_kill") -> int | None:
    """The value of `key` in a `key value` per line file, None if unreadable."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _counter_files() -> list[Path]:
    """The files that count OOM kills of this process's memory cgroup, then the machine's."""
    files = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":  # cgroup v2
            files += [CGROUP_ROOT / rel / "memory.events", CGROUP_ROOT / "memory.events"]
        elif "memory" in controllers.split(","):  # v1; the mount may already be namespaced
            files += [CGROUP_ROOT / "memory" / rel / "memory.oom_control"]
            files += [CGROUP_ROOT / "memory" / "memory.oom_control"]
    return [*dict.fromkeys(files), Path("/proc/vmstat")]


@dataclass(frozen=True)
class OomCounters:
    """The kernel's OOM-kill counts at one moment, by file (only those readable)."""

    counts: tuple[tuple[str, int], ...]

    @classmethod
    def read(cls) -> OomCounters:
        counts = ((str(f), _counter(f)) for f in _counter_files())
        return cls(tuple((f, n) for f, n in counts if n is not None))

    def rose_since(self, before: OomCounters) -> bool | None:
        """True if any count rose since `before`, False if none did, None if none was readable."""
        old = dict(before.counts)
        pairs = [(old[f], n) for f, n in self.counts if f in old]
        if not pairs:
            return None
        return any(n > m for m, n in pairs)


def describe_exit(code: int | None) -> str:
    """A process's end for people: `died of SIGSEGV`, `exited with code 1`, never `exit None`."""
    if code is None:
        return "did not exit (killed after waiting)"
    if code < 0:
        try:
            return f"died of {signal.Signals(-code).name}"
        except ValueError:
            return f"died of signal {-code}"
    return f"exited with code {code}"


def classify_death(code: int | None, before: OomCounters) -> tuple[str, str]:
    """(status, reason) for a worker that ended mid-case with exit code `code`."""
    if code == -signal.SIGKILL:
        rose = OomCounters.read().rose_since(before)
        if rose:
            return "oom", "worker killed by the kernel's OOM killer (its oom_kill count rose)"
        if rose is False:
            return "crash", "worker killed by SIGKILL from outside (no OOM kill counted)"
        return "crash", "worker killed by SIGKILL (no OOM-kill count readable to tell why)"
    return "crash", f"worker {describe_exit(code)}"

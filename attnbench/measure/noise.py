"""What disturbed a measurement: page faults and involuntary context switches of this process
during the timed region (getrusage), the CPU time *other* processes took on the machine
meanwhile (the kernel's accounting in /proc/stat, minus this process's own), and time the
hypervisor stole; and, for the whole machine, whether DAMON pages memory out and which
frequency governor runs (recorded in each result's `env`).

Thresholds, set from measurements on a 2-core AMD EPYC VM, the CI's machine then (README, "How
it measures"; the CI's 2-core VMs are now also Intel Xeons, where they were not re-derived):

- `page_faults`: the timed calls' faults would have cost more than PAGE_FAULT_SHARE of their
  time at FAULT_COST_S each (the first touch of a fresh 4 KiB page measured 5.7–7.4 µs
  there), or any major fault (a read from disk) happened;
- `contended`: other processes ran on more cores than the case left free (the machine's
  cores minus the case's threads) by more than CONTENDED_CORES on average over the timed
  region, or the hypervisor stole more than that.

Linux only: elsewhere nothing is recorded and nothing is flagged.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAULT_COST_S = 6e-6  # one minor fault (first touch of a 4 KiB page) on the CI VM
PAGE_FAULT_SHARE = 0.02  # faults costing more than this share of the timed calls flag them
CONTENDED_CORES = 0.25  # others' average use of the case's cores past this flags it
BUSY_SHARE = 0.25  # before a sweep: others using more than this share of the cores warns
BUSY_SAMPLE_S = 0.5
DAMON_ADMIN = "/sys/kernel/mm/damon/admin/kdamonds"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def _tick_s() -> float:
    return 1 / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[float, float] | None:
    """(busy, steal) seconds of the whole machine since boot, from /proc/stat's `cpu` line;
    busy counts user, nice, system, irq and softirq (guest time is inside user)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]] + [0] * (9 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq) * _tick_s(), steal * _tick_s()


@dataclass(frozen=True)
class Snapshot:
    wall: float
    usage: resource.struct_rusage
    machine: tuple[float, float] | None

    @classmethod
    def now(cls) -> Snapshot:
        return cls(time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF), _cpu_times())


@dataclass(frozen=True)
class Disturbance:
    """What happened on the machine between two snapshots."""

    wall_s: float
    faults_minor: int
    faults_major: int
    ctx_involuntary: int
    own_cpu_s: float
    other_cpu_s: float | None  # None where /proc/stat cannot be read
    steal_s: float | None

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot) -> Disturbance:
        own = (b.usage.ru_utime - a.usage.ru_utime) + (b.usage.ru_stime - a.usage.ru_stime)
        other = steal = None
        if a.machine and b.machine:
            # the accounting is in ticks (10 ms): a short window can read a little below zero
            other = max(0.0, (b.machine[0] - a.machine[0]) - own)
            steal = b.machine[1] - a.machine[1]
        return cls(
            wall_s=b.wall - a.wall,
            faults_minor=b.usage.ru_minflt - a.usage.ru_minflt,
            faults_major=b.usage.ru_majflt - a.usage.ru_majflt,
            ctx_involuntary=b.usage.ru_nivcsw - a.usage.ru_nivcsw,
            own_cpu_s=own,
            other_cpu_s=other,
            steal_s=steal,
        )

    @property
    def other_cores(self) -> float | None:
        """Cores the other processes kept busy, on average over the window."""
        if self.other_cpu_s is None or self.wall_s <= 0:
            return None
        return self.other_cpu_s / self.wall_s

    def metrics(self, calls: int) -> dict[str, Any]:
        """The record's noise metrics for `calls` timed calls in the window."""
        m: dict[str, Any] = {
            "timed_calls": calls,
            "timed_wall_s": round(self.wall_s, 6),
            "faults_minor": self.faults_minor,
            "faults_major": self.faults_major,
            "faults_per_call": (self.faults_minor + self.faults_major) / max(calls, 1),
            "ctx_involuntary": self.ctx_involuntary,
        }
        if self.other_cpu_s is not None:
            m["other_cpu_s"] = round(self.other_cpu_s, 4)
            m["other_cores"] = round(self.other_cores or 0.0, 3)
            m["steal_s"] = round(self.steal_s or 0.0, 4)
        return m

    def flags(self, *, threads: int, machine_cores: int | None = None) -> list[str]:
        """`page_faults` and `contended`, when past their thresholds (the module's docstring)."""
        out = []
        if self.faults_major or self.faults_minor * FAULT_COST_S > PAGE_FAULT_SHARE * self.wall_s:
            out.append("page_faults")
        free = max(0, (machine_cores or cores()) - threads)
        other = self.other_cores
        stolen = self.steal_s / self.wall_s if self.steal_s is not None and self.wall_s > 0 else 0.0
        if (other is not None and other > free + CONTENDED_CORES) or stolen > CONTENDED_CORES:
            out.append("contended")
        return out


@contextlib.contextmanager
def watch() -> Iterator[list[Disturbance]]:
    """Collect what disturbs the block: `with watch() as seen: …`, then `seen[0]`."""
    seen: list[Disturbance] = []
    start = Snapshot.now()
    try:
        yield seen
    finally:
        seen.append(Disturbance.between(start, Snapshot.now()))


def others_busy(sample_s: float = BUSY_SAMPLE_S) -> float | None:
    """The share of this machine's cores (0 … 1) other processes kept busy over `sample_s`
    seconds (this process sleeps meanwhile); None where /proc/stat cannot be read."""
    with watch() as seen:
        time.sleep(sample_s)
    d = seen[0]
    if d.other_cpu_s is None:
        return None
    total = os.cpu_count() or 1
    return min(1.0, (d.other_cpu_s + (d.steal_s or 0.0)) / (d.wall_s * total))


def busy_warning(sample_s: float = BUSY_SAMPLE_S) -> str | None:
    """A one-line warning when other processes use more than BUSY_SHARE of the cores."""
    share = others_busy(sample_s)
    if share is None or share <= BUSY_SHARE:
        return None
    total = os.cpu_count() or 1
    return (
        f"this machine is busy: other processes used {share * total:.1f} of its {total} cores over "
        f"{sample_s:g} s; timings will be disturbed (cases flagged `contended`): run on a quiet machine, "
        "or compare within one job (--repeat, compare --base)"
    )


def damon_pageout() -> bool | None:
    """Whether a DAMON scheme that pages memory out is running (DAMON's sysfs interface);
    None where the interface cannot be read."""
    admin = Path(DAMON_ADMIN)
    if not admin.is_dir():
        return None
    try:
        for action in glob.glob(f"{DAMON_ADMIN}/*/contexts/*/schemes/*/action"):
            kdamond = Path(action).parents[4]
            if Path(action).read_text().strip() == "pageout" and _read(kdamond / "state") == "on":
                return True
    except OSError:
        return None
    return False


def cpu_governor() -> str | None:
    """The cpufreq governor of CPU 0 (`performance`, `powersave`, …); None in VMs without
    cpufreq, where the host decides."""
    return _read(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@functools.cache
def machine_noise_env() -> dict[str, Any]:
    """What about the machine can disturb every timing: recorded in each result's env."""
    return {"damon_pageout": damon_pageout(), "cpu_governor": cpu_governor()}

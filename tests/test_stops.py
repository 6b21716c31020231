"""Stopping a run, from inside and out: SIGTERM is handled like Ctrl-C, a worker never
outlives its parent, a worker killed from outside is rerun and then recorded `crash` (an
`oom` only when the kernel counted an OOM kill), and the inline executor honours the timeout."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from processes import alive, children, wait_for

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.measure.settings import MeasureSettings
from attnbench.runner import deaths
from attnbench.runner.deadline import CaseTimeout, Deadline
from attnbench.runner.deaths import OomCounters, classify_death, describe_exit
from attnbench.runner.executors import InlineExecutor, SubprocessExecutor

FAST = MeasureSettings(min_run_time=0.01, warmup=0, calibrate=False)
ONE_CALL = MeasureSettings(metrics=(), warmup=0, calibrate=False)  # build, inputs, one call

SUITE = """
[suite]
timeout_s = 120
min_run_time_s = 0.01
calibrate = false
metrics = ["time"]
[sweep]
variants = ["softmax.naive", "testing.slow"]
seq_len = [32, 48, 64]
heads = [2]
d_head = [16]
threads = [1]
"""


def case(name: str, n: int = 32) -> Case:
    return Case(name, (), 1, 2, n, 16, threads=1)


PLUGIN = ("--plugin", "attnbench_testing_variants")


def start_run(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    suite = tmp_path / "stops.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnbench", "run", "--suite", str(suite), "-o", str(out), *PLUGIN, *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
def test_sigterm_mid_case_keeps_finished_results_stops_the_worker_and_exits_143(tmp_path, faulty_variants):
    proc, out = start_run(tmp_path)
    # the 4th case is testing.slow (cases run variant by variant): stop it mid-case
    assert wait_for(lambda: (out.exists() and len(records(out)) >= 3) or proc.poll() is not None)
    workers = children(proc.pid)
    assert workers, proc.communicate()[1] if proc.poll() is not None else "no worker"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert f"terminated (SIGTERM): finished cases are in {out}; continue with --resume -o {out}" in stderr
    assert all(wait_for(lambda w=w: not alive(w), 10) for w in workers)
    kept = records(out)
    assert len(kept) >= 3 and len({r["case_id"] for r in kept}) == len(kept)


@linux_only
def test_worker_exits_when_its_parent_is_killed_with_sigkill(tmp_path, faulty_variants):
    proc, _ = start_run(tmp_path, "--only", "testing.slow")
    assert wait_for(lambda: bool(children(proc.pid)) or proc.poll() is not None)
    workers = children(proc.pid)
    assert workers
    proc.kill()  # the parent alone, and with no chance to clean up
    proc.communicate(timeout=60)
    assert all(wait_for(lambda w=w: not alive(w), 15) for w in workers), "the worker outlived its parent"


@linux_only
def test_watchdog_ends_a_worker_whose_parent_died_without_pdeathsig(tmp_path):
    # the fallback for workers started off the main thread (no PR_SET_PDEATHSIG): a forked
    # child watches its parent's pid
    script = (
        "import os, sys, time\n"
        "from attnbench.runner.lifeline import die_with_parent\n"
        "parent = os.getpid()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    die_with_parent(parent, parent_main_thread=False)\n"
        "    time.sleep(120)\n"
        "    os._exit(0)\n"
        "print(pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait()
    assert wait_for(lambda: not alive(child), 15), "the watchdog did not end the orphaned worker"


def kill_workers(executor: SubprocessExecutor, times: int) -> threading.Thread:
    """In the background, SIGKILL each of the executor's next `times` workers once it runs."""

    def killer() -> None:
        seen: set[int] = set()
        while len(seen) < times:
            proc = executor._proc
            if proc is not None and proc.pid not in seen and executor._busy and proc.is_alive():
                time.sleep(0.3)  # well into the case
                seen.add(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_worker_killed_from_outside_is_rerun_once_then_recorded_crash_not_oom(faulty_variants):
    executor = SubprocessExecutor(ONE_CALL, timeout_s=120)
    try:
        killer = kill_workers(executor, 3)
        twice = executor.run(case("testing.slow"))  # its worker killed, then its rerun's
        once = executor.run(case("testing.slow", 48))  # its worker killed; the rerun finishes
        killer.join(timeout=5)
        assert executor.run(case("testing.ok")).status == "ok"  # and the sweep goes on
    finally:
        executor.close()
    assert twice.status == "crash", twice
    assert twice.error.count("SIGKILL") == 2 and "rerun on a fresh worker" in twice.error
    if OomCounters.read().counts:  # this machine exposes the kernel's counts
        assert "from outside" in twice.error
    assert once.status == "ok" and once.flags == ["rerun"]
    assert executor.starts == 4  # one worker per kill, and one more


def counters(count: int) -> OomCounters:
    return OomCounters((("/sys/fs/cgroup/memory.events", count), ("/proc/vmstat", 7)))


def test_sigkill_is_oom_only_when_the_kernel_counted_an_oom_kill(monkeypatch):
    monkeypatch.setattr(OomCounters, "read", classmethod(lambda cls: counters(3)))
    assert classify_death(-signal.SIGKILL, counters(2))[0] == "oom"
    status, reason = classify_death(-signal.SIGKILL, counters(3))
    assert status == "crash" and "from outside" in reason
    monkeypatch.setattr(OomCounters, "read", classmethod(lambda cls: OomCounters(())))
    status, reason = classify_death(-signal.SIGKILL, OomCounters(()))
    assert status == "crash" and "no OOM-kill count readable" in reason
    assert classify_death(-signal.SIGSEGV, counters(2)) == ("crash", "worker died of SIGSEGV")


def test_oom_counters_are_read_from_the_cgroup_and_the_machine(tmp_path, monkeypatch):
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    monkeypatch.setattr(deaths, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(deaths, "_counter_files", lambda: [tmp_path / "memory.events", tmp_path / "absent"])
    assert OomCounters.read().counts == ((str(tmp_path / "memory.events"), 2),)


def test_a_process_end_is_described_without_exit_none():
    assert describe_exit(None) == "did not exit (killed after waiting)"
    assert describe_exit(-signal.SIGSEGV) == "died of SIGSEGV"
    assert describe_exit(1) == "exited with code 1"


def test_worker_that_cannot_start_says_how_it_ended(tmp_path):
    # 64 MiB of address space is too little to import torch: the worker dies while starting
    executor = SubprocessExecutor(ONE_CALL, timeout_s=60, mem_limit=64 << 20, log_path=tmp_path / "w.log")
    with pytest.raises(UserError) as error:
        executor.run(case("softmax.naive"))
    executor.close()
    message = str(error.value)
    # how it dies depends on where the cap bites: an exit code, or a signal (SIGABRT, SIGSEGV)
    ended = r"(exited with code \d+|died of SIG[A-Z]+)"
    assert re.match(rf"the worker process {ended} while starting, twice; see .*w\.log$", message), message
    assert executor.starts == 2


def test_inline_executor_stops_a_hung_case_at_its_timeout(faulty_variants):
    executor = InlineExecutor(FAST, timeout_s=1.0)
    outcome = executor.run(case("testing.hang"))
    assert outcome.status == "timeout" and outcome.error == "no result within 1 s; stopped"
    assert executor.run(case("testing.ok")).status == "ok"  # the timer is gone with the case
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL


def test_a_timeout_the_case_swallows_is_raised_again_until_it_stops(capfd):
    import weakref

    class Finalised:
        pass

    def finaliser(_):  # where Python drops an exception, printing "Exception ignored"
        time.sleep(30)

    hook = sys.unraisablehook
    with pytest.raises(CaseTimeout), Deadline(0.2):
        doomed = Finalised()
        ref = weakref.ref(doomed, finaliser)
        del doomed  # the first timeout lands in the finaliser and is dropped
        with contextlib.suppress(CaseTimeout):  # as a case might swallow one itself
            time.sleep(30)
        time.sleep(30)
    assert ref() is None
    assert "Exception ignored" not in capfd.readouterr().err
    assert signal.getsignal(signal.SIGALRM) == signal.SIG_DFL and sys.unraisablehook is hook
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)

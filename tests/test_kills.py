"""A sweep stopped at random points, however it is stopped, and resumed each time, ends with
every case exactly once and a file of valid records: a finished result is never lost nor
doubled. Stopped by SIGKILL to `attnbench run` (nothing can clean up; its worker must die with
it), by SIGTERM (handled like Ctrl-C), or by SIGKILL to the worker alone (the case is rerun on
a fresh worker; killed twice, it is recorded `crash`).

The default run stops it at a few points; `pytest -m slow` at 20 (seeded, so a failure
replays the same points). A case killed twice, and so recorded `crash`, is also checked
deterministically, in the default run: `test_stops.py`'s worker tests.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import alive, children, is_worker, wait_for

from attnbench.results.schema import record_problem
from attnbench.suites import load_suite

SUITE = """
[suite]
min_run_time_s = 0.05
min_samples = 3
warmup = 0
calibrate = false
metrics = ["time"]
[sweep]
variants = ["softmax.naive", "softmax.sdpa_math"]
seq_len = [16, 32, 48, 64, 80, 96, 112, 128, 144, 160]
heads = [2]
d_head = [16]
threads = [1]
"""


def count(out: Path) -> int:
    return len(out.read_text().splitlines()) if out.exists() else 0


def start(suite: Path, out: Path, executor: str) -> subprocess.Popen:
    args = ["run", "--suite", str(suite), "-o", str(out), "--executor", executor, "--resume"]
    return subprocess.Popen(
        [sys.executable, "-m", "attnbench", *args],
        cwd=suite.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_every_case_once(suite: Path, out: Path, statuses: set[str]) -> list[dict]:
    records = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole
    assert [record_problem(r) for r in records] == [None] * len(records)
    ids = [r["case_id"] for r in records]
    assert len(ids) == len(set(ids)), "a finished case was run and recorded twice"
    assert set(ids) == {c.id for c in load_suite(str(suite)).cases()}, "a case was lost"
    assert {r["status"] for r in records} <= statuses, [r["error"] for r in records]
    return records


def stop_and_resume(tmp_path: Path, signum: int, points: int, executor: str, seed: int) -> None:
    rng = random.Random(seed)
    suite = tmp_path / "kills.toml"
    suite.write_text(SUITE)
    out = tmp_path / "kills.jsonl"
    for _ in range(points):
        proc = start(suite, out, executor)
        target = count(out) + rng.randint(0, 1)
        # a random point: after 0 or 1 more records, and a random part of a case
        wait_for(lambda p=proc, n=target: p.poll() is not None or count(out) >= n, 120)
        time.sleep(rng.uniform(0, 0.4))
        workers = children(proc.pid)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        assert "Traceback" not in stderr, stderr
        if signum == signal.SIGTERM and proc.returncode != 0:  # 0: it finished first
            # -15: the signal came while Python was starting, before any handler
            assert proc.returncode in (143, -signal.SIGTERM), stderr
            if proc.returncode == 143:
                assert "continue with --resume" in stderr or "terminated (SIGTERM)" in stderr
        assert all(wait_for(lambda w=w: not alive(w), 15) for w in workers), "a worker outlived its run"
    final = start(suite, out, executor)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr
    assert_every_case_once(suite, out, {"ok"})


def kill_workers_of(proc: subprocess.Popen, out: Path, kills: int, rng: random.Random) -> int:
    """SIGKILL the run's worker `kills` times: mostly once it has recorded a case and a random
    moment after; about every third time, seconds after it appeared (while it starts, or
    reruns the case its predecessor died in: a second death of one case is recorded `crash`),
    never twice in a row (a worker killed each time it starts stops the sweep: exit 2).
    Returns how many kills landed."""
    landed, seen, early = 0, set(), False
    while landed < kills and proc.poll() is None:
        workers = [w for w in children(proc.pid) if w not in seen and is_worker(w)]
        if not workers:
            time.sleep(0.02)
            continue
        worker = workers[0]
        seen.add(worker)
        early = not early and rng.randint(0, 2) == 0
        if not early:
            before = count(out)
            if not wait_for(lambda n=before: count(out) > n or proc.poll() is not None, 120):
                break
            time.sleep(rng.uniform(0, 0.3))
        else:
            time.sleep(rng.uniform(0.5, 2.5))  # a worker takes seconds to start
        if proc.poll() is None and alive(worker):
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                continue
            landed += 1
    return landed


def workers_killed_during_a_sweep(tmp_path: Path, kills: int, seed: int) -> None:
    suite = tmp_path / "kills.toml"
    # each kill waits for a case from the new worker, or a few seconds, and cases pass
    # meanwhile: 160 cases leave room for 20 kills
    longer = ", ".join(str(16 * i) for i in range(11, 81))
    suite.write_text(SUITE.replace("seq_len = [", f"seq_len = [{longer}, "))
    out = tmp_path / "kills.jsonl"
    proc = start(suite, out, "subprocess")
    landed = kill_workers_of(proc, out, kills, random.Random(seed))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    records = assert_every_case_once(suite, out, {"ok", "crash"})
    hit = sum("rerun" in r["flags"] for r in records) + sum(r["status"] == "crash" for r in records)
    assert landed == kills and hit >= 1, f"{landed} kills landed, {hit} on a case"
    for r in records:
        if r["status"] == "crash":  # killed, and killed again on its rerun
            assert r["error"].count("SIGKILL") == 2 and "rerun on a fresh worker" in r["error"]


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@linux_only
@pytest.mark.parametrize(
    "signum",
    # SIGTERM mid-case is also tests/test_stops.py's; here it is the slow session's
    [
        pytest.param(signal.SIGKILL, id="SIGKILL"),
        pytest.param(signal.SIGTERM, id="SIGTERM", marks=pytest.mark.slow),
    ],
)
def test_sweep_stopped_at_a_few_points_and_resumed_holds_every_case_once(tmp_path, signum):
    stop_and_resume(tmp_path, signum, points=2, executor="inline", seed=16)


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_sweep_stopped_at_20_random_points_and_resumed_holds_every_case_once(tmp_path, signum):
    stop_and_resume(tmp_path, signum, points=20, executor="subprocess", seed=1600 + signum)


@linux_only
@pytest.mark.slow
def test_sweep_whose_worker_is_killed_20_times_holds_every_case_once(tmp_path):
    workers_killed_during_a_sweep(tmp_path, kills=20, seed=16)

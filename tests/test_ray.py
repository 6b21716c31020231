"""The Ray executor on a local 2-CPU Ray instance, shared by this module: the CI suite gives
the subprocess executor's case ids, statuses and exact CPU memory; hangs, segfaults and OOMs
are the statuses they are under the subprocess executor and the sweep completes; an actor
killed mid-case is rerun once, then recorded `crash`; a run stopped by Ctrl-C or SIGTERM
leaves no actor and a file `--resume` finishes. (A node that leaves the cluster: test_ray_cluster.py.)"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from processes import alive, wait_for

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.results import load_results
from attnbench.runner.sweep import run_sweep
from attnbench.suites import Suite, load_suite

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'attnbench[ray]' (or nox -s ray)")
pytestmark = pytest.mark.ray

from attnbench.runner.ray_executor import RayExecutor  # noqa: E402  (after the skip: it needs ray)

ONE_CALL = MeasureSettings(metrics=(), warmup=0, calibrate=False)  # build, inputs, one call
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def local_ray():
    """One small Ray instance of its own for the module (starting one takes seconds): 2 CPUs,
    no dashboard; never a cluster that `ray start` made on this machine."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=128 << 20,
        log_to_driver=False,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def case(name: str, n: int = 32, **kw) -> Case:
    return Case(name, (), 1, 2, n, 16, **{"threads": 1, **kw})


def case_workers() -> list[int]:
    """The pids of the Ray actors that run cases (Ray names the process after the actor)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes().startswith(b"ray::CaseWorker"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return [p for p in pids if alive(p)]


def test_the_ci_suite_gives_the_subprocess_executors_ids_statuses_and_exact_memory(local_ray, tmp_path):
    suite = load_suite("ci")  # timing is not compared (it differs run to run): memory only
    settings = dataclasses.replace(suite.settings, metrics=("memory",), warmup=0, calibrate=False)
    suite = dataclasses.replace(suite, settings=settings)
    frames = {}
    for executor in ("subprocess", "ray"):
        out = tmp_path / f"{executor}.jsonl"
        run_sweep(suite, suite.cases(), out=out, executor=executor, mem_limit=None)
        frames[executor] = load_results(out).set_index("case_id").sort_index()
    sub, on_ray = frames["subprocess"], frames["ray"]
    assert list(sub.index) == list(on_ray.index) and len(sub) == len(suite.cases())
    assert sub["status"].to_dict() == on_ray["status"].to_dict()
    ran = sub["status"] == "ok"
    assert ran.sum() >= 8
    assert sub.loc[ran, "peak_mem_bytes"].to_dict() == on_ray.loc[ran, "peak_mem_bytes"].to_dict()


def test_a_hang_a_segfault_and_an_oom_are_their_statuses_and_the_sweep_completes(
    local_ray, faulty_variants, tmp_path
):
    cases = [
        case("testing.ok"),
        case("testing.hang"),
        case("testing.crash"),
        case("testing.oom"),
        case("testing.ok", 48),
        case("testing.ok", 64, device="cuda"),  # no node has a GPU
    ]
    suite = Suite(name="faults", path=tmp_path / "faults.toml", timeout_s=6, settings=ONE_CALL)
    out = tmp_path / "faults.jsonl"
    outcome = run_sweep(suite, cases, out=out, executor="ray", mem_limit=4 << 30)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["case_id"]: r for r in records}
    assert len(records) == len(by_id) == len(cases)
    statuses = [by_id[c.id]["status"] for c in cases]
    assert statuses == ["ok", "timeout", "crash", "oom", "ok", "unsupported"]
    assert by_id[cases[1].id]["error"] == "no result within 6 s; worker killed"
    assert by_id[cases[2].id]["error"].count("SIGSEGV") == 2  # its worker, then the rerun's
    assert "allocate" in by_id[cases[3].id]["error"]  # torch's own message under the cap
    assert by_id[cases[5].id]["error"] == "no node of the Ray cluster has a GPU for this case"
    assert all(by_id[c.id]["env"]["ray_node_id"] for c in cases[:5])
    assert outcome.statuses["ok"] == 2 and outcome.worker_starts >= 4


@linux_only
def test_an_actor_killed_mid_case_is_rerun_once_on_a_new_one_then_recorded_crash(local_ray, faulty_variants):
    executor = RayExecutor(ONE_CALL, timeout_s=120)
    killed: list[int] = []

    def killer() -> None:  # SIGKILL the first two actors that run a case, well into it
        while len(killed) < 2:
            busy = [p for p in case_workers() if p not in killed and b".run" in _cmdline(p)]
            if busy:
                time.sleep(0.5)
                killed.append(busy[0])
                os.kill(busy[0], signal.SIGKILL)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        twice = executor.run(case("testing.slow"))
        thread.join(timeout=5)
        after = executor.run(case("testing.ok"))
    finally:
        executor.close()
    assert twice.status == "crash", twice
    assert twice.error.count("its Ray actor on ") == 2, twice.error
    assert twice.error.count("died (Worker unexpectedly exits") == 2, twice.error
    assert after.status == "ok" and after.flags == []
    assert wait_for(lambda: not case_workers(), 30), "close() left actors running"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


STOPPED = """
[suite]
timeout_s = 120
calibrate = false
metrics = []
warmup = 0
[sweep]
variants = ["testing.slow"]
seq_len = [16, 24, 32, 40, 48, 56]
heads = [2]
d_head = [16]
threads = [1]
"""


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize(
    "stop, code, said, own_instance",
    [
        # Ctrl-C in a terminal: SIGINT to the whole process group, the local Ray instance the
        # run started included
        (signal.SIGINT, 130, "interrupted", True),
        (signal.SIGTERM, 143, "terminated (SIGTERM)", False),  # a scheduler's stop; a cluster joined
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_cancels_what_runs_and_resume_finishes_with_every_case_once(
    local_ray, tmp_path, stop, code, said, own_instance
):
    suite = tmp_path / "stopped.toml"
    suite.write_text(STOPPED)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "attnbench", "run", "--suite", str(suite), "-o", str(out)]
    command += ["--plugin", "attnbench_testing_variants", "--executor", "ray"]
    joined = [*command, "--address", local_ray]
    proc = subprocess.Popen(
        command if own_instance else joined,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives it
    )
    started = lambda: (out.exists() and len(out.read_text().splitlines()) >= 2) or proc.poll() is not None
    assert wait_for(started, 240)
    if own_instance:
        os.killpg(proc.pid, stop)
    else:
        proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"{said}: finished cases are in {out}; continue with --resume -o {out}" in stderr
    assert wait_for(lambda: not case_workers(), 30), "the stopped run left actors running"
    done = len(out.read_text().splitlines())
    assert 2 <= done < 6
    again = subprocess.run([*joined, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["case_id"] for line in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6


CONVERT = """
[suite]
timeout_s = 600
[task]
name = "convert"
corpus = "{corpus}"
seq_len = 16
d_model = 32
layers = 1
heads = 2
batch = 8
train_tokens = 5120
finetune_tokens = 2560
eval_tokens = 256
curve_tokens = 128
eval_every = 10
lr = 1e-2
warmup = 5
[sweep]
variants = ["linear.t2r", "linear.elu"]
device = ["cpu"]
threads = [1]
"""


@pytest.mark.slow
def test_training_cases_run_at_once_and_train_their_shared_softmax_model_once(
    local_ray, tmp_path, monkeypatch
):
    corpus = tmp_path / "text.txt"
    corpus.write_bytes(
        b"".join([b"the cat sat on the mat. ", b"a dog ran in the fog. "][i % 2] for i in range(400))
    )
    (tmp_path / "convert.toml").write_text(CONVERT.format(corpus=corpus))
    monkeypatch.setenv("ATTNBENCH_CACHE_DIR", str(tmp_path / "cache"))  # the actors' workers read it
    suite = load_suite(str(tmp_path / "convert.toml"))
    out = tmp_path / "convert.jsonl"
    run_sweep(suite, suite.cases(), out=out, executor="ray", mem_limit=None)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"], [r["error"] for r in records]
    # both arms start from the same softmax LM: one worker trained it, the other waited and loaded it
    assert sorted(r["metrics"]["pretrain_checkpoint"] for r in records) == ["cached", "trained"]

"""Isolation: a case that runs out of memory, kills its process or hangs is recorded as
`oom`, `crash` or `timeout`, and the sweep goes on with the worker replaced. A parallel
executor's results are appended as they finish; an executor's own options are refused to others."""

from __future__ import annotations

import io
import itertools
import json
import socket
import sys

import pytest

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.measure.settings import MeasureSettings
from attnbench.results import load_results
from attnbench.runner.executors import InlineExecutor, SubprocessExecutor
from attnbench.runner.sweep import run_sweep
from attnbench.suites import Suite

FAST = MeasureSettings(min_run_time=0.01, warmup=0, calibrate=False)


def case(name: str, n: int = 32) -> Case:
    return Case(name, (), 1, 2, n, 16, "float32", "cpu", False, "fwd", threads=1)


def test_faults_become_statuses_and_the_sweep_goes_on(faulty_variants, tmp_path):
    cases = [
        case("testing.ok"),
        case("testing.oom"),
        case("testing.ok", 48),
        case("testing.crash"),
        case("testing.ok", 64),
        case("testing.hang"),
        case("testing.ok", 80),
    ]
    suite = Suite(name="faults", path=tmp_path / "faults.toml", timeout_s=8, settings=FAST)
    out = tmp_path / "faults.jsonl"
    outcome = run_sweep(suite, cases, out=out, executor="subprocess", mem_limit=4 << 30)
    df = load_results(out).set_index("case_id")
    status = {c.id: df.loc[c.id, "status"] for c in cases}
    assert [status[c.id] for c in cases] == ["ok", "oom", "ok", "crash", "ok", "timeout", "ok"]
    assert df.loc[cases[3].id, "error"].count("SIGSEGV") == 2  # its first worker, then the rerun's
    assert "allocate" in df.loc[cases[1].id, "error"]  # torch's own message, not a kill
    # replaced after the crash, again after the crash's rerun, and after the hang; the OOM
    # did not cost a worker
    assert outcome.worker_starts == 4
    assert df.loc[cases[6].id, "rel_err"] < 1e-5


def test_worker_is_reused_across_cases(tmp_path):
    executor = SubprocessExecutor(FAST, timeout_s=60)
    try:
        statuses = [executor.run(case("softmax.naive", n)).status for n in (16, 32, 48)]
    finally:
        executor.close()
    assert executor.starts == 1 and statuses == ["ok"] * 3


def test_inline_and_subprocess_give_the_same_non_timing_metrics():
    c = case("softmax.naive", 100)
    settings = MeasureSettings(metrics=("memory", "error"), warmup=0, calibrate=False)
    inline = InlineExecutor(settings).run(c)
    sub = SubprocessExecutor(settings, timeout_s=60)
    try:
        isolated = sub.run(c)
    finally:
        sub.close()
    for key in ("peak_mem_bytes", "rel_err", "max_abs_err"):
        assert inline.metrics[key] == isolated.metrics[key], key


def test_unsupported_case_is_recorded_with_its_reason():
    result = InlineExecutor(FAST).run(case("softmax.sdpa_efficient"))
    assert result.status == "unsupported" and "efficient" in result.error
    result = InlineExecutor(FAST).run(Case("softmax.flex", (), 1, 2, 32, 16, mode="fwd+bwd", threads=1))
    assert result.status == "unsupported" and "backward" in result.error


class InPairs:
    """A parallel executor for the sweep's sake: takes two cases at a time, answers the second first."""

    options = ()

    def __init__(self, settings, **_):
        self.inline = InlineExecutor(settings)

    def run(self, case):
        return self.inline.run(case)

    def run_many(self, cases):
        cases = iter(cases)
        while pair := list(itertools.islice(cases, 2)):
            yield from reversed([(c, self.run(c)) for c in pair])

    def close(self):
        pass


def test_a_parallel_executor_s_results_are_appended_as_they_finish_each_once(tmp_path):
    from attnbench.runner.executors import EXECUTORS

    EXECUTORS.add("in-pairs", InPairs)
    try:
        cases = [case("softmax.naive", n) for n in (16, 32, 48)]
        suite = Suite(name="pairs", path=tmp_path / "p.toml", timeout_s=60, settings=FAST)
        out = tmp_path / "p.jsonl"
        outcome = run_sweep(suite, cases, out=out, executor="in-pairs")
        ids = [r["case_id"] for r in (json.loads(line) for line in out.read_text().splitlines())]
        assert ids == [cases[1].id, cases[0].id, cases[2].id] and outcome.statuses["ok"] == 3
        budget = Suite(name="pairs", path=tmp_path / "p.toml", timeout_s=60, settings=FAST, budget_s=0)
        spent = run_sweep(budget, cases, out=tmp_path / "b.jsonl", executor="in-pairs")
        assert spent.left == 3 and not (tmp_path / "b.jsonl").read_text()  # none taken past the budget
    finally:
        EXECUTORS.remove("in-pairs")


class NoCluster:
    """An executor that cannot start, as the Ray executor with `--address auto` and no cluster."""

    def __init__(self, settings, **_):
        raise UserError("--address auto: no Ray cluster is running here")


def test_an_executor_that_cannot_start_announces_nothing_and_leaves_no_file(tmp_path):
    from rich.console import Console

    from attnbench.runner.executors import EXECUTORS

    EXECUTORS.add("no-cluster", NoCluster)
    try:
        console = Console(file=io.StringIO())
        suite = Suite(name="nc", path=tmp_path / "nc.toml", timeout_s=60, settings=FAST)
        out = tmp_path / "nc.jsonl"
        with pytest.raises(UserError, match="no Ray cluster"):
            run_sweep(suite, [case("softmax.naive")], out=out, executor="no-cluster", console=console)
        assert console.file.getvalue() == ""  # no "1 case → nc.jsonl" before the error
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither results nor worker log
        out.write_text("")  # a file that was there before the run is the user's: kept
        with pytest.raises(UserError):
            run_sweep(suite, [case("softmax.naive")], out=out, executor="no-cluster", console=console)
        assert out.exists()
    finally:
        EXECUTORS.remove("no-cluster")


def test_an_option_of_another_executor_is_refused_naming_its_executor(tmp_path, tiny_suite, user_error):
    line = user_error("run", "--suite", tiny_suite, "-o", tmp_path / "r.jsonl", "--address", "auto")
    assert line.startswith("--address does not apply to --executor subprocess")
    line = user_error("run", "--suite", tiny_suite, "--executor", "inline", "--max-parallel", "0")
    assert line == "argument --max-parallel: '0' is not above 0 (see attnbench run --help)"
    assert not (tmp_path / "r.jsonl").exists()


def test_the_ray_executor_without_ray_says_how_to_install_it(tmp_path, tiny_suite, user_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: importing it fails
    line = user_error("run", "--suite", tiny_suite, "-o", tmp_path / "r.jsonl", "--executor", "ray")
    assert line == "--executor ray needs Ray, which is not installed: pip install 'attnbench[ray]'"
    assert not (tmp_path / "r.jsonl").exists()


def test_a_ray_case_asks_for_its_threads_or_one_gpu_and_never_for_more_than_a_node_has():
    from attnbench.runner.ray_executor import Need

    assert Need.of(case("softmax.naive"), 16) == Need(1, 0)
    assert Need.of(Case("softmax.naive", (), 1, 2, 32, 16, threads=8), 16) == Need(8, 0)
    assert Need.of(Case("softmax.naive", (), 1, 2, 32, 16, threads=8), 4) == Need(4, 0)  # a whole node
    assert Need.of(Case("softmax.sdpa", (), 1, 2, 32, 16, device="cuda", threads=8), 4) == Need(1, 1)
    nodes = [{"CPU": 5.0}, {"CPU": 2.0, "GPU": 4.0}]
    assert (Need(2, 0).room(nodes), Need(1, 1).room(nodes), Need(4, 0).room(nodes)) == (3, 2, 1)


def test_a_worker_started_by_a_ray_actor_does_not_run_the_actors_main_script(tmp_path, monkeypatch):
    import multiprocessing
    import time

    from attnbench.runner.ray_worker import main_script_hidden

    ran = tmp_path / "ran"
    script = tmp_path / "default_worker.py"  # stands for Ray's, which imports all of Ray
    script.write_text(f"import pathlib\npathlib.Path({str(ran)!r}).touch()\n")
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(script), raising=False)
    # run as a script, as Ray runs it (under `python -m pytest`, spawn would import pytest's instead)
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)

    def start_one() -> None:
        child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
        child.start()
        child.join(60)

    start_one()  # the check can fail: without the guard, spawn runs the main script
    assert ran.exists()
    ran.unlink()
    with main_script_hidden():
        start_one()
    assert not ran.exists()
    assert sys.modules["__main__"].__file__ == str(script)


@pytest.mark.ray
def test_a_ray_address_where_nothing_answers_is_one_line_before_anything_runs(
    tmp_path, tiny_suite, user_error
):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'attnbench[ray]' (or nox -s ray)")
    with socket.socket() as free:  # a port nothing listens on (ray.init would retry it for ever)
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    out = tmp_path / "r.jsonl"
    line = user_error(
        "run", "--suite", tiny_suite, "-o", out, "--executor", "ray", "--address", f"127.0.0.1:{port}"
    )
    assert line == (
        f"cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused "
        f"(start it there with `ray start --head --port {port}`)"
    )
    assert not out.exists()

"""A node that leaves a Ray cluster mid-sweep: on a local two-node test cluster
(`ray.cluster_utils.Cluster`), the worker node is killed while it runs cases; the sweep ends
with every case exactly once, none lost, the killed node's cases rerun on the head node."""

from __future__ import annotations

import json
import threading

import pytest

from attnbench.cases import Case
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.sweep import run_sweep
from attnbench.suites import Suite

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'attnbench[ray]' (or nox -s ray)")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

from ray.cluster_utils import Cluster  # noqa: E402  (after the skip)

# the head notices a dead node within about a second (the default waits 15 s and more)
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_failure_threshold": 3,
}


@pytest.fixture
def two_nodes():
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": FAST_HEALTH_CHECKS},
    )
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_a_node_killed_mid_sweep_loses_no_result_and_reruns_its_cases(two_nodes, faulty_variants, tmp_path):
    cluster, worker = two_nodes
    cases = [Case("testing.slow", (), 1, 2, n, 16, threads=1) for n in range(16, 16 + 8 * 8, 8)]
    suite = Suite(
        name="nodes", path=tmp_path / "n.toml", timeout_s=120, settings=MeasureSettings(metrics=(), warmup=0)
    )
    out = tmp_path / "nodes.jsonl"
    records = lambda: [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    worker_id = worker.node_id

    def kill_when_it_has_run_a_case() -> None:
        while not any(r["env"].get("ray_node_id") == worker_id for r in records()):
            threading.Event().wait(0.05)
        threading.Event().wait(0.5)  # its next case is well under way
        cluster.remove_node(worker, allow_graceful=False)

    killer = threading.Thread(target=kill_when_it_has_run_a_case, daemon=True)
    killer.start()
    run_sweep(suite, cases, out=out, executor="ray", mem_limit=None)
    killer.join(timeout=1)
    done = records()
    ids = [r["case_id"] for r in done]
    assert sorted(ids) == sorted(c.id for c in cases)  # every case, exactly once
    assert all(r["status"] == "ok" for r in done)
    nodes = {r["env"]["ray_node_id"] for r in done}
    assert worker_id in nodes and len(nodes) == 2  # the worker node finished some before it went
    rerun = [r for r in done if "rerun" in r["flags"]]
    assert rerun and all(r["env"]["ray_node_id"] != worker_id for r in rerun)

"""Compatibility with results already on disk: the CI suite, run now, has the same case ids
and statuses as the committed baseline (a refactor that changed a case's identity or what can
run would break `--resume`, `compare` and every join across runs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from attnbench.results import load_results
from attnbench.runner.sweep import run_sweep
from attnbench.suites import load_suite

BASELINE = Path(__file__).resolve().parent.parent / "results" / "baselines" / "ci-cpu.jsonl"


def test_the_ci_suite_gives_the_baselines_case_ids_and_statuses(tmp_path):
    suite = load_suite("ci")
    # statuses do not depend on how long a case is timed: one sample, no warm-up, no ceilings
    quick = dataclasses.replace(suite.settings, min_run_time=0.0, min_samples=1, warmup=0, calibrate=False)
    suite = dataclasses.replace(suite, settings=quick)
    out = tmp_path / "ci.jsonl"
    run_sweep(suite, suite.cases(), out=out, executor="inline")
    now = load_results(out).set_index("case_id")["status"].sort_index()
    then = load_results(BASELINE).set_index("case_id")["status"].sort_index()
    assert list(now.index) == list(then.index)
    assert now.to_dict() == then.to_dict()

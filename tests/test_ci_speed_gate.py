"""`.ci/speed-gate`: skips with one line where there is no base commit, and otherwise runs the
same-job A/B with the rule whose error rates benchmarks/gate_error_rates.py measured."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / ".ci" / "speed-gate"


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _repo(tmp_path: Path, commits: int) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i in range(commits):
        (repo / "f").write_text(str(i))
        _git(repo, "add", "f")
        _git(repo, "commit", "-qm", str(i))
    return repo


def _gate(repo: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the gate with a stand-in `attnbench` that prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "attnbench"
    fake.write_text('#!/bin/sh\necho "attnbench $*"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("ATTNBENCH_GATE_BASE", None)
    return subprocess.run(["bash", str(GATE)], cwd=repo, env=env, capture_output=True, text=True)


def test_a_first_commit_skips_the_gate_with_one_line(tmp_path):
    done = _gate(_repo(tmp_path, 1), tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "speed gate: skipped (no base commit HEAD~1: a first commit, a shallow clone or not a git checkout)"
    ]


def test_with_a_previous_commit_it_runs_the_ab_with_the_measured_ci_rule(tmp_path):
    path = ROOT / "benchmarks" / "gate_error_rates.py"
    spec = importlib.util.spec_from_file_location("gate_error_rates", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rules = module.CONFIGS["ci"]
    done = _gate(_repo(tmp_path, 2), tmp_path)
    assert done.returncode == 0, done.stderr
    args = done.stdout.split()
    assert args[:6] == ["attnbench", "compare", "--base", "HEAD~1", "--suite", "gate"]
    flags = dict(zip(args[10::2], args[11::2], strict=True))
    assert float(flags["--alpha"]) == rules.alpha
    assert float(flags["--min-effect"]) == rules.min_effect
    assert flags["--correction"] == rules.correction
    assert flags["--speed-as"] == rules.speed

"""`.ci/speed-gate`: skips with one line where there is no base commit, and otherwise runs the
same-job A/B with the rule whose error rates benchmarks/gate_error_rates.py measured; a
regression fails CI only when a second job finds one too."""

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


def _gate(repo: Path, tmp_path: Path, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run the gate with a stand-in `attnbench` that prints its arguments and exits with the
    next of `codes` (the verdict of each A/B job: 0 none, 1 a regression)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "codes").write_text("".join(f"{c}\n" for c in codes))
    fake = bin_dir / "attnbench"
    fake.write_text(
        f'#!/bin/sh\necho "attnbench $*"\ncode=$(head -n 1 {bin_dir}/codes)\n'
        f'sed -i 1d {bin_dir}/codes\nexit "$code"\n'
    )
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


def test_a_regression_fails_only_when_a_second_job_finds_one_too(tmp_path):
    repo = _repo(tmp_path, 2)
    quiet = _gate(repo, tmp_path, (0,))
    assert quiet.returncode == 0 and quiet.stdout.count("attnbench compare") == 1
    once = _gate(repo, tmp_path, (1, 0))
    assert once.returncode == 0 and once.stdout.count("attnbench compare") == 2
    assert "a second job must find one too" in once.stdout
    twice = _gate(repo, tmp_path, (1, 1))
    assert twice.returncode == 1 and twice.stdout.count("attnbench compare") == 2
    broken = _gate(repo, tmp_path, (2,))  # a user error is no verdict: no second job
    assert broken.returncode == 2 and broken.stdout.count("attnbench compare") == 1

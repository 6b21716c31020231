"""Same-job A/B on a copy of this repository, in rounds of replicates: a commit planting a
sleep in one variant is caught by `compare --base HEAD~1 --repeat 3`; a commit changing only
a comment is not. The minimum effect is loose (a 3× slower ratio) so a busy machine cannot
fail the second; the planted sleep makes the variant ~100× slower."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = """
[suite]
description = "A/B test suite"
timeout_s = 120
min_run_time_s = 0.05
metrics = ["time"]
[sweep]
variants = ["softmax.sdpa", "softmax.naive"]
batch = [1]
heads = [2]
seq_len = [128]
d_head = [32]
causal = [true]
threads = [1]
"""
NAIVE = "attnbench/variants/softmax/naive.py"
ANCHOR = "        n_q, n_k = q.shape[-2], k.shape[-2]\n"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """This working tree (tracked and untracked, not ignored files) as a fresh repository."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    dest = tmp_path / "repo"
    for name in files:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / "ab.toml").write_text(SUITE)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "base")
    return dest


def commit_change(repo: Path, new_line: str) -> None:
    path = repo / NAIVE
    text = path.read_text()
    assert ANCHOR in text
    path.write_text(text.replace(ANCHOR, ANCHOR + new_line, 1))
    git(repo, "commit", "-qam", "change")


def ab(repo: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "attnbench", "compare", "--base", "HEAD~1", "--suite", "ab.toml",
               "-o", "ab-out", "--repeat", "3", "--min-effect", "2"]  # fmt: skip
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def test_a_planted_sleep_is_caught(repo):
    commit_change(repo, "        __import__('time').sleep(0.01)  # planted: ~100× the call\n")
    proc = ab(repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "REGRESSION" in proc.stdout and "softmax.naive" in proc.stdout
    assert "1 case judged on their replicates (≥ 3 a side)" in proc.stdout
    for side in ("base", "head"):
        records = [json.loads(line) for line in (repo / "ab-out" / f"{side}.jsonl").read_text().splitlines()]
        pairs = sorted((r["label"], r["round"]) for r in records)  # both cases, every round, once
        assert pairs == [(v, r) for v in ("softmax.naive", "softmax.sdpa") for r in range(3)]


@pytest.mark.slow  # .ci/speed-gate runs an A/B job of the previous commit on every CI run
def test_a_comment_change_is_not(repo):
    commit_change(repo, "        # a comment, nothing else\n")
    proc = ab(repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no regression" in proc.stdout

"""A sweep killed midway and resumed produces every row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SUITE = """
[suite]
min_run_time_s = 0.2
calibrate = false
[sweep]
variants = ["softmax.naive", "softmax.sdpa_math"]
seq_len = [64, 128, 192, 256]
heads = [2]
d_head = [16]
threads = [1]
"""


def attnbench(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attnbench", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_killed_sweep_resumes_with_every_case_exactly_once(tmp_path):
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out.jsonl"
    proc = attnbench("run", "--suite", str(suite), "-o", str(out), "--executor", "inline", cwd=tmp_path)
    deadline = time.time() + 120
    while len(lines(out)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(lines(out))
    assert 3 <= partial < 8, "the kill should land midway through the sweep"

    again = attnbench(
        "run", "--suite", str(suite), "-o", str(out), "--executor", "inline", "--resume", cwd=tmp_path
    )
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr.decode()
    records = [json.loads(line) for line in lines(out) if line.strip()]
    ids = [r["case_id"] for r in records]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert all(r["status"] == "ok" for r in records)


def test_output_that_already_holds_results_needs_resume(tmp_path):
    suite = tmp_path / "resume.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out.jsonl"
    out.write_text('{"case_id": "x", "case": {}, "status": "ok"}\n')
    proc = attnbench("run", "--suite", str(suite), "-o", str(out), cwd=tmp_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert stderr.decode().strip().count("\n") == 0 and "--resume" in stderr.decode()
    assert out.read_text().count("\n") == 1  # nothing lost

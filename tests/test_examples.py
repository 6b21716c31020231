"""The examples run end to end (at small sizes) and the README shows the registered one as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_notebook_example_benches_its_function_beside_the_registry(tmp_path):
    script = EXAMPLES / "benchmark_your_attention.py"
    done = python(str(script), "--seq-len", "64", "128", "--chunk", "32", "--min-run-time", "0.01",
                  "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(latency / softmax.sdpa's)" in done.stdout
    for name in ("memory.png", "latency.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["status"] for r in rows} == {"ok"} and len(rows) == 3 * 2
    peak = {(r["label"], r["case"]["seq_len"]): r["metrics"]["peak_mem_bytes"] for r in rows}
    err = {r["label"]: r["metrics"]["rel_err"] for r in rows}
    # in blocks of 32 queries, chunked_softmax never holds the 128×128 scores softmax.naive does
    assert peak["chunked_softmax", 128] < peak["softmax.naive", 128]
    assert err["chunked_softmax"] < 1e-5  # float32 against the float64 oracle


def test_the_registered_example_runs_from_the_command_line_with_plugin(tmp_path):
    out = tmp_path / "r.jsonl"
    done = python("-m", "attnbench", "run", "--plugin", str(EXAMPLES / "my_attention.py"), "mine.sigmoid",
                  "softmax.sdpa", "--seq-len", "32", "64", "--causal", "both", "--min-run-time", "0.01",
                  "--executor", "inline", "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mine.sigmoid" in done.stdout and "8 ok" in done.stdout


def test_the_readme_shows_the_registered_example_as_it_is():
    assert (EXAMPLES / "my_attention.py").read_text().strip() in (REPO / "README.md").read_text()

"""`scripts/device_check.sh` and the kernel benchmark it runs, on a machine without a GPU: the
script skips cleanly (exit 0, nothing run), and `benchmarks/triton_vs_fla.py` runs its own
check-then-time loop under Triton's interpreter at a tiny shape (fla-core's rows `skipped`
when the package is missing, ours checked against the PyTorch chunked form)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")


def test_device_check_skips_without_a_gpu(tmp_path):
    env = os.environ | {"OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = ROOT / "scripts" / "device_check.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device here: the GPU checks are skipped" in done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # the kernels themselves: tests/test_triton_kernels.py, in the default run
def test_triton_vs_fla_checks_then_times_under_the_interpreter(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "kernels.json"
    args = ["--device", "cpu", "--dtype", "float32", "--seq-len", "32", "--heads", "1", "--chunk", "16"]
    args += ["--shapes", "32x16", "--min-run-time", "0.01", "-o", str(out)]
    env = os.environ | {"TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "triton_vs_fla.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {(r["impl"], r["rule"]): r for r in json.loads(out.read_text())["rows"]}
    for rule in ("delta", "sum"):
        ours = rows["attnbench triton", rule]
        assert ours["status"] == "ok" and ours["rel_err"] < 1e-4 and ours["ms"] > 0, ours
        if importlib.util.find_spec("fla") is None:
            assert rows["fla-core", rule]["status"] == "skipped"

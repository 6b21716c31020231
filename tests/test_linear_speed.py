"""`benchmarks/linear_speed.py`'s bookkeeping, without timing anything: `--targets` selects
every case the issue-19 targets read (and only those), and each target is the ratio of the
rows it names within one round."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    from attnbench.discovery import add_plugins

    add_plugins([str(ROOT / "benchmarks" / "plain_linear.py")])  # bench.plain_chunk
    spec = importlib.util.spec_from_file_location("linear_speed", ROOT / "benchmarks" / "linear_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def args(**kw) -> argparse.Namespace:
    base = dict(batch=1, heads=8, seq_len=8192, d_head=64, dtype="float32", device="cpu", threads=1)
    return argparse.Namespace(**base | {"targets": False, "only": []} | kw)


def test_targets_select_every_case_the_targets_read(bench):
    keys = {bench.key(c) for c in bench.cases(args(targets=True))}
    assert {(label, mode) for label, mode in bench.TARGET_CASES} == {
        (k.rsplit(" ", 2)[0], k.rsplit(" ", 2)[1]) for k in keys
    }
    assert "linear.dpfp[norm=sum,rule=delta] fwd+bwd N=4096" in keys
    assert "linear.elu fwd N=8192" in keys and "linear.favor fwd N=8192" not in keys
    assert {bench.key(c) for c in bench.cases(args(only=["linear.elu fwd *"]))} == {"linear.elu fwd N=8192"}


def test_targets_are_ratios_within_the_round(bench):
    delta = "linear.dpfp[norm=sum,rule=delta]"
    rows = {
        "linear.elu fwd N=8192": {"latency_ms": 40.0, "flops": 4e9},
        "linear.dpfp[norm=sum] fwd N=8192": {"latency_ms": 100.0},
        f"{delta} fwd N=8192": {"latency_ms": 230.0},
        f"{delta} fwd+bwd N=4096": {"latency_ms": 500.0},
        f"{delta} fwd+bwd N=8192": {"latency_ms": 1050.0},
        "bench.elu_stream fwd N=8192": {"latency_ms": 90.0},
    }
    got = bench.targets(rows, 2e11, args())
    assert got == pytest.approx(
        {
            "linear.elu fwd % of matmul (≥ 50)": 50.0,  # 4 GFLOP in 40 ms = 100 of 200 GFLOP/s
            "eager stream fwd / linear.elu fwd (the fused CPU kernel's gain)": 2.25,
            "delta fwd / sum fwd, DPFP-1 (≤ 2.5)": 2.3,
            "delta fwd+bwd N=8192 / N=4096 (≤ 2.3)": 2.1,
        }
    )


@pytest.mark.parametrize("chunk", [16, 64])
def test_the_ceiling_script_runs_at_a_chunk_other_than_d(chunk):
    """`linear_ceiling.py --chunk C` with C ≠ d: the scores are C×C, not C×d (a C larger than d
    once failed in its first product). Small shapes; the script's numbers are not checked."""
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "benchmarks" / "linear_ceiling.py"), "--chunk", str(chunk)]
    cmd += ["--heads", "2", "--seq-len", "256", "--d-head", "32", "--repeats", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ceiling with that traffic, not overlapped:" in done.stdout

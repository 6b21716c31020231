"""The chunk kernels' shared memory: every registered configuration fits an H100/H200's 227 KiB
(counted by `kernels.budget`, which needs no GPU), the tiles shrink to fit a smaller device,
and the count bounds what Triton itself allocates (compiled for sm_90 without a GPU: slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.errors import Unsupported
from attnbench.kernels import budget
from attnbench.variants.linear.triton import registered_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_registered_configurations_span_the_issue_grid():
    """d ∈ {64, 128, 256} and d_dot up to 384 (DPFP-3 at d = 64), both rules."""
    configs = registered_configs()
    assert {d for _, d, _, _ in configs} == {64, 128, 256}
    assert max(f for f, *_ in configs) == 384
    assert (256, 128, 64, True) in configs  # DPFP-1 at d = 128 with the delta rule


@pytest.mark.parametrize("precision", ["ieee", "tf32"])
def test_every_registered_configuration_fits_227_kib(precision):
    for f, d, chunk, delta in registered_configs():
        tiles = budget.choose_tiles(f, d, chunk, delta=delta, precision=precision)
        need = budget.shared_bytes(tiles, delta=delta)
        assert need <= 227 * 1024, (f, d, chunk, delta, tiles, need)
        assert tiles.block_k == min(64, max(16, f)) and tiles.block_v == 64, tiles  # nothing shrunk


def test_tiles_shrink_to_fit_a_smaller_device(monkeypatch):
    """chunk 128 on an A100 (163 KiB): BV, then BK, halve until the count fits."""
    monkeypatch.setattr(budget, "device_shared", lambda device=None: 163 * 1024)
    tiles = budget.choose_tiles(256, 128, 128, delta=True)
    assert budget.shared_bytes(tiles, delta=True) <= 163 * 1024
    assert (tiles.block_k, tiles.block_v) < (64, 64)
    with pytest.raises(Unsupported, match="shared memory"):
        budget.choose_tiles(256, 128, 256, delta=True)  # a 256 × 256 score tile alone is 256 KiB


def test_shared_bytes_grow_with_tiles_not_with_d_dot():
    small, large = (budget.choose_tiles(f, 128, 64, delta=True) for f in (128, 384))
    assert small == large


@pytest.mark.slow
def test_counted_bytes_bound_what_triton_allocates(tmp_path):
    """Compile the tiled kernels for sm_90 (no GPU needed) at d_dot 256 × d 128 and 384 × 64,
    both rules, fp32 and bf16 inputs: Triton's shared memory ≤ the budget's count."""
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for precision in ("tf32", "ieee"):
        out = tmp_path / f"{precision}.json"
        args = ["--only", "--config", "256,128,64", "--config", "384,64,64", "--precision", precision]
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "shared_memory.py"), *args, "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        for row in json.loads(out.read_text())["rows"]:
            assert max(row["compiled"].values()) <= row["counted"], row

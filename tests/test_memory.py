"""CPU peak memory is exact tensor bytes: a known allocation is counted to the byte, and
softmax.naive's peak follows its N² formula exactly, run after run."""

from __future__ import annotations

import torch

from attnbench.cases import Case
from attnbench.measure.memory import peak_bytes_cpu
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.execute import execute

MEMORY_ONLY = MeasureSettings(metrics=("memory",), calibrate=False, warmup=0)


def test_peak_of_known_allocations_is_exact():
    def two_live_then_one():
        a = torch.empty(1000, dtype=torch.float32)  # 4000 B
        b = torch.empty(250, dtype=torch.float64)  # 2000 B
        del a
        c = torch.empty(100, dtype=torch.uint8)  # 100 B
        return b, c

    assert peak_bytes_cpu(two_live_then_one) == 6000


def test_peak_does_not_count_what_existed_before():
    x = torch.ones(10_000)
    assert peak_bytes_cpu(lambda: x.mul_(x)) == 0


def naive_peak(seq_len: int, causal: bool = False, mode: str = "fwd") -> int:
    case = Case("softmax.naive", (), 1, 2, seq_len, 32, "float32", "cpu", causal, mode, threads=1)
    result = execute(case, MEMORY_ONLY)
    assert result.status == "ok", result.error
    return result.metrics["peak_mem_bytes"]


def test_naive_forward_peak_is_its_formula():
    # scores (B·H·N² fp32) and probabilities (B·H·N²) live at once, then the output (B·H·N·D)
    b, h, d = 1, 2, 32
    for n in (128, 256):
        assert naive_peak(n) == 4 * (2 * b * h * n * n + b * h * n * d)


def test_naive_peak_grows_quadratically_and_is_identical_across_runs():
    sizes = [128, 256, 512, 1024]
    peaks = [naive_peak(n, causal=True, mode="fwd+bwd") for n in sizes]
    assert peaks == [naive_peak(n, causal=True, mode="fwd+bwd") for n in sizes]
    ratios = [peaks[i + 1] / peaks[i] for i in range(len(sizes) - 1)]
    assert all(3.5 < r <= 4.0 for r in ratios), ratios  # doubling N: ×4 in the limit


def test_sdpa_flash_peak_is_far_below_naive_at_long_n():
    """The fused CPU kernel never holds N×N: its peak grows linearly in N."""
    flash = [
        execute(Case("softmax.sdpa_flash", (), 1, 2, n, 32, threads=1), MEMORY_ONLY).metrics["peak_mem_bytes"]
        for n in (1024, 2048)
    ]
    assert flash[1] < 2.5 * flash[0]
    assert flash[1] < naive_peak(2048) / 10

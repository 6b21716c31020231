"""GPU checks, run on the device machine with `pytest -m gpu` (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from test_variants import check_against_oracle

from attnbench.cases import Case
from attnbench.measure.memory import peak_bytes_cuda
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.execute import execute

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)"),
]
CUDA_VARIANTS = [v for v in REGISTRY.all() if v.reference and "cuda" in v.devices and not v.approximates]


@pytest.mark.parametrize("cls", CUDA_VARIANTS, ids=lambda c: c.name)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_cuda_variant_agrees_with_float64_oracle(cls, dtype, causal):
    if not cls.available("cuda"):
        pytest.skip(cls.available("cuda").reason)
    if causal not in cls.causal_modes:
        pytest.skip(f"{cls.name} has no {'causal' if causal else 'non-causal'} form")
    check_against_oracle(
        cls, batch=2, heads=4, seq_len=333, d_head=64, dtype=dtype, causal=causal, device="cuda"
    )


def test_cuda_peak_memory_of_a_known_allocation_is_exact():
    def alloc():
        x = torch.empty(1 << 20, dtype=torch.float32, device="cuda")  # 4 MiB, a multiple of the block size
        return x

    assert peak_bytes_cuda(alloc) == 4 << 20


def test_a_cuda_case_is_timed_with_do_bench_and_records_memory():
    case = Case("softmax.sdpa", (), 2, 8, 1024, 64, "bfloat16", "cuda", True, "fwd+bwd", threads=1)
    result = execute(case, MeasureSettings(min_run_time=0.05, calibrate=False))
    assert result.status == "ok", result.error
    m = result.metrics
    assert m["timer"] == "triton.testing.do_bench" and m["mem_method"] == "cuda-max-allocated"
    assert m["peak_mem_bytes"] > 0 and m["rel_err"] < 2e-2

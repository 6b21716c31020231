"""pytest-benchmark over the registry at small CPU sizes: every variant that runs here, causal
forward, B=1, H=4, N=256, D=64, fp32, 2 threads. Run with `nox -s bench`; save a run with
`--benchmark-save=NAME` and check a later one with
`--benchmark-compare=NAME --benchmark-compare-fail=median:20%`.

Each benchmark also records what `attnbench run --repeat` records for a case, in its
`extra_info` (saved with the run): the 95 % bootstrap interval of the median over
pytest-benchmark's rounds (`--benchmark-min-rounds`, after `--benchmark-warmup`), and what
disturbed it (page faults, context switches, other processes' CPU time; the window includes
pytest-benchmark's calibration and warm-up) with the `contended` / `page_faults` flags.

Not part of the default test run (it measures, it does not check)."""

from __future__ import annotations

import pytest
import torch

from attnbench.cases import Case
from attnbench.errors import Unsupported
from attnbench.inputs import make_qkv
from attnbench.measure import noise
from attnbench.measure.allocator import steady_cpu_allocator
from attnbench.registry import REGISTRY
from attnbench.stats import bootstrap_median_ci

SHAPE = dict(batch=1, heads=4, seq_len=256, d_head=64)
steady_cpu_allocator()  # the allocator attnbench's workers time with
VARIANTS = [v for v in REGISTRY.all() if v.available("cpu")]


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.name)
def test_forward(benchmark, cls):
    torch.set_num_threads(2)
    causal = True in cls.causal_modes  # non-causal variants (low-rank) run their only form
    case = Case(cls.name, (), causal=causal, mode="fwd", threads=2, **SHAPE)
    torch.manual_seed(0)
    layer = cls(heads=SHAPE["heads"], d_head=SHAPE["d_head"])
    try:
        layer.check(case)
    except Unsupported as e:
        pytest.skip(str(e))
    q, k, v = make_qkv(case.shape, dtype=torch.float32, device="cpu", seed=0)
    benchmark.extra_info["causal"] = causal

    def call():
        with torch.no_grad():
            layer(q, k, v, causal=causal)

    with noise.watch() as seen:
        benchmark(call)
    rounds = benchmark.stats.stats.data  # seconds a call, one value per round
    ci = bootstrap_median_ci(rounds)
    benchmark.extra_info["median_ci_s"] = list(ci) if ci else None
    benchmark.extra_info.update(seen[0].metrics(len(rounds)))
    benchmark.extra_info["flags"] = seen[0].flags(threads=case.threads)

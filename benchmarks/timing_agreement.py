"""Does the harness time what a direct measurement times?

For softmax.sdpa_math and softmax.naive at a few shapes, compare the median latency that
`attnbench` records with a direct `torch.utils.benchmark.Timer` of the same computation
written out by hand (no attnbench code in the timed statement), at the same thread count.
Measurements alternate harness/direct twice and take the median of each pair, so slow drift
of a shared machine hits both sides. Exit 1 when any pair differs by more than the tolerance.

    python benchmarks/timing_agreement.py [--device cuda] [--tolerance 0.05]

On CUDA the direct side is `triton.testing.do_bench` and the variants are the pinned flash and
cuDNN SDPA backends in bf16 and fp16.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
import torch.nn.functional as F
import torch.utils.benchmark as tbench
from rich.console import Console
from rich.table import Table
from torch.nn.attention import SDPBackend, sdpa_kernel

from attnbench.cases import Case
from attnbench.measure.allocator import steady_cpu_allocator
from attnbench.measure.settings import MeasureSettings
from attnbench.runner.execute import execute

DIRECT_CPU = {
    "softmax.sdpa_math": "with sdpa_kernel(SDPBackend.MATH): F.scaled_dot_product_attention(q, k, v)",
    "softmax.naive": "torch.softmax((q @ k.transpose(-2, -1)).mul_(scale), dim=-1) @ v",
}
BACKENDS_CUDA = {
    "softmax.sdpa_flash": SDPBackend.FLASH_ATTENTION,
    "softmax.sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
}


def direct_cpu(variant: str, case: Case, min_run_time: float) -> float:
    q, k, v = (torch.randn(case.batch, case.heads, case.seq_len, case.d_head) for _ in range(3))
    env = {
        "q": q,
        "k": k,
        "v": v,
        "F": F,
        "torch": torch,
        "scale": case.d_head**-0.5,
        "sdpa_kernel": sdpa_kernel,
        "SDPBackend": SDPBackend,
    }
    timer = tbench.Timer(stmt=DIRECT_CPU[variant], globals=env, num_threads=case.threads)
    timer.timeit(3)  # warm-up
    return timer.blocked_autorange(min_run_time=min_run_time).median


def direct_cuda(variant: str, case: Case, min_run_time: float) -> float:
    from triton.testing import do_bench

    dtype = getattr(torch, case.dtype)
    q, k, v = (
        torch.randn(case.batch, case.heads, case.seq_len, case.d_head, device="cuda", dtype=dtype)
        for _ in range(3)
    )

    def fn():
        with sdpa_kernel(BACKENDS_CUDA[variant]):
            F.scaled_dot_product_attention(q, k, v, is_causal=case.causal)

    return do_bench(fn, warmup=25, rep=int(min_run_time * 1e3), return_mode="median") / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    steady_cpu_allocator()  # the harness's workers do this too; the direct side must match

    if args.device == "cuda":
        plan = [
            (v, Case(v, (), b, h, n, d, dt, "cuda", causal, "fwd", threads=args.threads))
            for v in BACKENDS_CUDA
            for dt in ("bfloat16", "float16")
            for causal in (False, True)
            for (b, h, n, d) in [(4, 16, 4096, 128), (1, 16, 16384, 128)]
        ]
        direct = direct_cuda
    else:
        plan = [
            (v, Case(v, (), 1, 8, n, 64, "float32", "cpu", False, "fwd", threads=args.threads))
            for v in DIRECT_CPU
            for n in (512, 1024, 2048)
        ]
        direct = direct_cpu
    settings = MeasureSettings(metrics=("time",), min_run_time=args.min_run_time, calibrate=False)
    table = Table(
        title=f"harness vs direct timing ({args.device}, {args.threads} threads)", title_justify="left"
    )
    for col in (
        "variant",
        "shape",
        "dtype",
        "causal",
        "harness ms",
        "direct ms",
        "ratio",
        "threads used",
        "agree",
    ):
        table.add_column(col, justify="right" if col.endswith(("ms", "ratio")) else "left")
    failures = 0
    for variant, case in plan:
        harness, plain, threads_used = [], [], set()
        for _ in range(2):
            result = execute(case, settings)
            if result.status != "ok":
                table.add_row(
                    variant,
                    str(case.shape),
                    case.dtype,
                    str(case.causal),
                    result.status,
                    "",
                    "",
                    "",
                    result.error or "",
                )
                break
            harness.append(result.metrics["latency_ms"] / 1e3)
            threads_used.add(result.metrics["threads_used"])
            plain.append(direct(variant, case, args.min_run_time))
        else:
            h, d = statistics.median(harness), statistics.median(plain)
            ok = abs(h / d - 1) <= args.tolerance
            failures += not ok
            table.add_row(
                variant,
                str(case.shape),
                case.dtype,
                str(case.causal),
                f"{h * 1e3:.3f}",
                f"{d * 1e3:.3f}",
                f"{h / d:.3f}",
                ",".join(map(str, sorted(threads_used))),
                "[green]yes[/]" if ok else "[red]no[/]",
            )
    Console(width=160).print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

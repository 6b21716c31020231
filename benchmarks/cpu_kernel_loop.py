"""`linear.elu`'s no-grad causal forward with the fused CPU kernel and without it (the eager
stream), alternated in one process at one and two threads: a quick check of the kernel's gain
and of how it splits rows over threads, and a steady loop to run under `perf record`.

    python benchmarks/cpu_kernel_loop.py                      # B=1 H=8 N=8192 d=64, 5 rounds
    perf record python benchmarks/cpu_kernel_loop.py --only kernel --threads 1 --rounds 20

Wall clock, median of `--calls` calls per cell, each round alternating the cells; on a shared VM
the spread over rounds says how far to trust a ratio (`linear_speed.py` is the careful run).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnbench.kernels import native
from attnbench.measure.allocator import steady_cpu_allocator
from attnbench.registry import REGISTRY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", choices=("kernel", "stream"), default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    steady_cpu_allocator()
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, args.heads, args.seq_len, args.d_head, generator=gen) for _ in range(3))
    module = REGISTRY.get("linear.elu")(heads=args.heads, d_head=args.d_head)
    sides = [s for s in ("kernel", "stream") if args.only in (None, s)]
    times: dict[tuple[str, int], list[float]] = {}
    with torch.no_grad():
        for _ in range(args.rounds):
            for threads in args.threads:
                torch.set_num_threads(threads)
                for side in sides:
                    module.cpu_kernel = side == "kernel"
                    module(q, k, v, causal=True)  # warm: the kernel is built on first use
                    calls = []
                    for _ in range(args.calls):
                        start = time.perf_counter()
                        module(q, k, v, causal=True)
                        calls.append(time.perf_counter() - start)
                    times.setdefault((side, threads), []).append(1e3 * statistics.median(calls))
    print(f"cpu_kernels: {native.state()}")
    for (side, threads), ms in times.items():
        print(f"{side:6s} threads={threads}: {statistics.median(ms):.1f} ms [{min(ms):.1f}–{max(ms):.1f}]")
    for threads in args.threads:
        if len(sides) == 2:
            ratio = [s / k for s, k in zip(times["stream", threads], times["kernel", threads], strict=True)]
            print(
                f"stream / kernel, threads={threads}: {statistics.median(ratio):.2f} "
                f"[{min(ratio):.2f}–{max(ratio):.2f}]"
            )


if __name__ == "__main__":
    main()

"""How fast `linear.elu`'s chunked forward could be on this CPU if everything but its matmuls
were free: its batched matmuls alone, at the shapes the streamed form gives them, against the
dense fp32 matmul rate, both timed by the thread's CPU time (one thread; a shared VM's waits
left out).

The form's FLOP count (`attnbench list`; full C×C chunk scores) divided by the time of its
matmuls alone is the most it can reach; issue 19 asks for 50 % of the dense rate. Any form
must also read q, k and v and write its output once: eager PyTorch cannot overlap that memory
traffic with the matmuls (each is its own operator), so the script times it too, and prints
the ceiling with it added. Per block of
L tokens (`chunk_blocks.plan`: B·H·L/C chunks of C), the form runs four batched products: the
scores Q Kᵀ, the chunks' writes Kᵀ [V | 1], the intra-chunk output tril(QKᵀ) [V | 1] and the
inter-chunk read Q S added in place (`chunk_blocks.Block`). φ's time is printed beside them.

    python benchmarks/linear_ceiling.py                  # B=1, H=8, N=8192, d=64, C=64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from attnbench.cases import Case
from attnbench.measure.allocator import steady_cpu_allocator
from attnbench.registry import REGISTRY
from attnbench.variants.linear.chunk_blocks import Spec, plan


def thread_ms(fn) -> float:
    start = time.thread_time()
    fn()
    return (time.thread_time() - start) * 1e3


def spread(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.{1 if max(values) < 100 else 0}f} [{min(values):.3g}–{max(values):.3g}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steady_cpu_allocator()  # the harness's allocator settings
    h, n, d, c = args.heads, args.seq_len, args.d_head, args.chunk
    block = plan(Spec(False, True, c), h, n, d, d, 4, grad=False).block
    per_block = h * block // c  # chunks batched in one product
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(per_block, c, d, generator=gen) for _ in range(2))
    scores = torch.randn(per_block, c, c, generator=gen)
    x, mem = (torch.randn(per_block, c if i == 0 else d, d + 1, generator=gen) for i in range(2))

    out_scores, out = torch.empty_like(scores), torch.empty_like(x)

    def matmuls() -> None:  # into reused buffers where the form does (`chunk_blocks.Scratch`)
        for _ in range(n // block):
            torch.bmm(q, k.mT, out=out_scores).tril_()
            torch.bmm(k.mT, x)
            torch.bmm(scores, x, out=out).baddbmm_(q, mem)

    a = torch.randn(2048, 2048, generator=gen)
    flops = REGISTRY.get("linear.elu").flops(
        Case("linear.elu", (), 1, h, n, d).shape, causal=True, mode="fwd", params={"chunk": c}
    )
    phi = REGISTRY.get("linear.elu")(heads=h, d_head=d).feature_map
    raw_q, raw_k, raw_v = (torch.randn(1, h, n, d, generator=gen) for _ in range(3))
    output, scratch, fq, fk = (torch.empty(1, h, n, d), *(torch.empty(1, h, block, d) for _ in range(3)))

    def traffic() -> None:  # what any form moves: q, k, v read once and its output written once
        for s in range(0, n, block):
            torch.add(raw_q[:, :, s : s + block], raw_k[:, :, s : s + block], out=scratch)
            torch.add(raw_v[:, :, s : s + block], scratch, out=output[:, :, s : s + block])

    def features() -> None:  # φ(q), φ(k) block by block into reused buffers, as the forward does
        for s in range(0, n, block):
            phi.into(raw_q[:, :, s : s + block], fq), phi.into(raw_k[:, :, s : s + block], fk)

    dense, ms, phi_ms, moved_ms = [], [], [], []
    for _ in range(args.repeats + 1):  # alternating, so each ratio pairs neighbours in time
        dense.append(2 * 2048**3 / thread_ms(lambda: torch.mm(a, a)) / 1e6)
        ms.append(thread_ms(matmuls))
        phi_ms.append(thread_ms(features))
        moved_ms.append(thread_ms(traffic))
    dense, ms, phi_ms, moved_ms = dense[1:], ms[1:], phi_ms[1:], moved_ms[1:]  # the first round warms up
    pct = [100 * flops / (t / 1e3) / 1e9 / r for t, r in zip(ms, dense, strict=True)]
    floor = [t + m for t, m in zip(ms, moved_ms, strict=True)]  # matmuls, then the unavoidable traffic
    with_traffic = [100 * flops / (t / 1e3) / 1e9 / r for t, r in zip(floor, dense, strict=True)]
    print(f"blocks of {block} tokens: {n // block} × 4 batched products of {per_block} chunks each")
    print(f"dense 2048² fp32 matmul: {spread(dense)} GFLOP/s")
    print(f"the form's matmuls alone: {spread(ms)} ms for its {flops / 1e9:.2f} GFLOP")
    print(f"φ = elu + 1 of queries and keys alone: {spread(phi_ms)} ms")
    print(f"q, k, v read and the output written once, alone: {spread(moved_ms)} ms")
    print(f"ceiling: {spread(pct)} % of the dense rate, median [min–max] over {args.repeats} rounds")
    print(f"ceiling with that traffic, not overlapped: {spread(with_traffic)} % of the dense rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())

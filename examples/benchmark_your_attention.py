"""Benchmark your own attention beside the registered variants, from Python. Run it as a
script, or cell by cell in a notebook (each `# %%` is a cell; the argument parsing then keeps
its defaults):

    python examples/benchmark_your_attention.py              # N = 512 … 4096, a few minutes on 2 cores
    python examples/benchmark_your_attention.py --seq-len 64 128 --chunk 32 --min-run-time 0.01

It writes results.jsonl, memory.png, latency.png and report.html into --out (default
examples-out/). tests/test_examples.py runs it at the small sizes above.
"""

# %%
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import attnbench

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seq-len", type=int, nargs="+", default=[512, 1024, 2048, 4096])
parser.add_argument("--chunk", type=int, default=256, help="queries per block of chunked_softmax")
parser.add_argument("--min-run-time", type=float, default=0.3, help="timed seconds per case")
parser.add_argument("--out", type=Path, default=Path("examples-out"))
args, _ = parser.parse_known_args()  # a notebook kernel passes arguments of its own
CHUNK = args.chunk


# %% The attention to measure: exact softmax attention, a block of queries at a time, so the
# N×N score matrix never exists whole (peak memory CHUNK×N per head instead of N×N).
def chunked_softmax(q, k, v, causal=False):
    """softmax(QKᵀ/√d)V on (batch, heads, N, d_head) tensors, CHUNK query rows at a time."""
    n = q.shape[-2]
    out = torch.empty_like(q)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        scores = torch.matmul(q[..., start:stop, :], k.transpose(-2, -1)).mul_(1 / math.sqrt(q.shape[-1]))
        if causal:  # query i reads keys 0…i
            rows = torch.arange(start, stop, device=q.device)[:, None]
            scores.masked_fill_(torch.arange(n, device=q.device)[None, :] > rows, float("-inf"))
        out[..., start:stop, :] = torch.matmul(torch.softmax(scores, dim=-1), v)
    return out


# %% Measure it beside two registered variants, with the same harness: median latency with its
# spread, exact CPU peak memory, and the error against the float64 softmax oracle.
df = attnbench.bench(
    chunked_softmax,
    "softmax.naive",
    "softmax.sdpa",
    seq_len=args.seq_len,
    heads=4,
    d_head=64,
    causal=True,
    reference="softmax",
    min_run_time=args.min_run_time,
    output=args.out / "results.jsonl",
)

# %% One row per variant, one column per N. Compare latencies as ratios measured in the same
# run (a shared machine drifts between runs); peak memory on CPU is exact.
ok = df[df["status"] == "ok"]
print(ok.pivot_table(index="label", columns="seq_len", values="peak_mem_bytes") / 2**20, "\n(peak MiB)")
latency = ok.pivot_table(index="label", columns="seq_len", values="latency_ms")
print((latency / latency.loc["softmax.sdpa"]).round(2), "\n(latency / softmax.sdpa's)")
print(ok.groupby("label")["rel_err"].max(), "\n(largest error against the float64 oracle)")

# %% The command line's figures and HTML report, from the same DataFrame.
print(attnbench.plot(ok, "peak_mem_bytes", args.out / "memory.png", title="peak memory, causal fwd"))
print(attnbench.plot(ok, "latency_ms", args.out / "latency.png", title="latency, causal fwd"))
print(attnbench.report(df, args.out / "report.html", title="chunked_softmax vs the registry"))

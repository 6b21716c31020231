"""The chunked linear-attention forms against the best softmax path, at one long shape.

Runs each case through the harness (`attnbench.runner.execute`, the suites' own timing:
torch.utils.benchmark on CPU, do_bench on GPU) and prints, per case, latency, tokens/s, the
speed-up over the fastest softmax variant measured here, and the share of this machine's
calibrated fp32 matmul rate. FLOPs are each form's own matmul work (`attnbench list` shows the
formula). Results are also written as JSON.

    python benchmarks/linear_speed.py                       # CPU, 2 threads, N = 8192
    python benchmarks/linear_speed.py --device cuda --dtype bfloat16 --seq-len 65536 --heads 16 --d-head 128
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attnbench.cases import Case
from attnbench.env import machine_env
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.executors import make_executor

SOFTMAX = ["softmax.sdpa", "softmax.sdpa_flash", "softmax.sdpa_efficient", "softmax.sdpa_cudnn"]
LINEAR = [
    ("linear.elu", (("chunk", 32),)),
    ("linear.elu", ()),
    ("linear.elu", (("chunk", 128),)),
    ("linear.identity", ()),
    ("linear.dpfp", ()),
    ("linear.favor", ()),
    ("linear.t2r", ()),
    ("linear.dpfp", (("rule", "delta"), ("norm", "sum"))),
    ("linear.elu@triton", ()),
    ("linear.dpfp@triton", (("rule", "delta"), ("norm", "sum"))),
    ("external.fla_linear", ()),
    ("external.fla_delta", ()),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-head", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    settings = MeasureSettings(metrics=("time",), min_run_time=args.min_run_time)
    shape = (args.batch, args.heads, args.seq_len, args.d_head, args.dtype, args.device, True, "fwd")
    # the suites' own worker process (its allocator settings, its memory cap), one per case
    executor = make_executor("subprocess", settings, timeout_s=600, mem_limit=None, log_path=None)
    rows = []
    out = args.output or Path(__file__).parent / "results" / f"linear_speed-{args.device}.json"
    header = {"machine": machine_env(), "args": vars(args) | {"output": str(out)}}
    save = lambda: out.write_text(json.dumps({**header, "rows": rows}, indent=1))
    for name, params in [(n, ()) for n in SOFTMAX] + LINEAR:
        if not REGISTRY.get(name).available(args.device):
            continue
        case = Case(name, params, *shape, threads=args.threads)
        result = executor.run(case)
        executor.close()  # a fresh worker for the next case: no case inherits another's heap
        rows.append({"label": case.label, "status": result.status, "error": result.error, **result.metrics})
        print(f"{case.label}: {result.status} {result.metrics.get('latency_ms', '')}", file=sys.stderr)
        save()  # after every case: a run cut short keeps what it measured
    timed = [r for r in rows if r.status == "ok"]
    best = min((r for r in timed if r["label"].startswith("softmax.")), key=lambda r: r["latency_ms"])
    table = Table(
        title=f"causal fwd, B={args.batch} H={args.heads} N={args.seq_len} D={args.d_head} "
        f"{args.dtype} {args.device} threads={args.threads}"
    )
    for col in ("variant", "ms", "tokens/s", f"× {best['label']}", "TFLOP/s", f"% {args.dtype} matmul peak"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in timed:
        peak = r.get("pct_peak_flops")
        table.add_row(
            escape(r["label"]),
            f"{r['latency_ms']:.2f}",
            f"{r['tokens_per_s']:,.0f}",
            f"{best['latency_ms'] / r['latency_ms']:.1f}",
            f"{r.get('tflops', 0):.3f}",
            "" if peak is None else f"{peak:.1f}",
        )
    Console(width=160).print(table)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

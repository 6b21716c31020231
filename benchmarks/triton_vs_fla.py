"""Our Triton chunk kernels beside fla-core's, on the same features, at the shapes users train
with (a GPU benchmark; `scripts/device_check.sh` runs it).

For each (d_dot, d) and rule: attnbench's `chunk_delta_rule` / `chunk_linear_attn` (tiled:
`attnbench/kernels/`), fla-core's `chunk_delta_rule` / `chunk_linear_attn` (fla takes
(B, N, H, ·); a query scale of 1, no normalisation) and, for scale, our PyTorch chunked form.
Each output is first checked against the PyTorch chunked form in float32 (relative error below
2e-2 in bf16): a failing check gives an `error` row and no time, as fla's verify-then-bench does.
Times are `triton.testing.do_bench` medians with quartiles (`attnbench.measure.timing`). Rows
whose package is missing say so (`skipped`), they do not fail the run.

    python benchmarks/triton_vs_fla.py                       # CUDA, bf16, B=1, H=16, N=16384
    python benchmarks/triton_vs_fla.py --seq-len 65536 -o benchmarks/results/triton_vs_fla-cuda.json
    TRITON_INTERPRET=1 python benchmarks/triton_vs_fla.py --device cpu --dtype float32 \\
        --seq-len 64 --heads 1 --chunk 16 --shapes 256x128   # the script itself, on CPU, tiny
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from attnbench.env import machine_env
from attnbench.measure.numerics import relative_error
from attnbench.measure.timing import time_fn
from attnbench.variants.linear import chunked
from attnbench.variants.linear.forms import sum_normalised

SHAPES = ("256x128", "384x64", "128x128", "128x64")  # d_dot x d: DPFP-1 at d=128, DPFP-3 at 64, …
BOUND = 2e-2


def inputs(b: int, h: int, n: int, f: int, d: int, dtype, device, seed: int = 0):
    """Sum-normalised elu features (so the delta rule's writes contract), values, β."""
    gen = torch.Generator().manual_seed(seed)
    q, k = (sum_normalised(F.elu(torch.randn(b, h, n, f, generator=gen)) + 1) for _ in range(2))
    v = torch.randn(b, h, n, d, generator=gen)
    beta = torch.sigmoid(torch.randn(b, h, n, generator=gen))
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, beta)]


def implementations(delta: bool, chunk: int):
    """name -> (package or None, fn(q, k, v, beta) -> out (B, H, N, D))."""
    fla = lambda x: x.transpose(1, 2).contiguous()  # (B, N, H, ·)

    def ours(q, k, v, beta):
        from attnbench.kernels.delta_chunk import chunk_delta_rule
        from attnbench.kernels.linear_chunk import chunk_linear_attn

        if delta:
            return chunk_delta_rule(q, k, v, beta, chunk=chunk)
        return chunk_linear_attn(q, k, v, chunk=chunk)

    def fla_core(q, k, v, beta):
        if delta:
            from fla.ops.delta_rule import chunk_delta_rule

            out, _ = chunk_delta_rule(fla(q), fla(k), fla(v), fla(beta.unsqueeze(-1)).squeeze(-1), scale=1.0)
        else:
            from fla.ops.linear_attn import chunk_linear_attn

            out, _ = chunk_linear_attn(fla(q), fla(k), fla(v), scale=1.0, normalize=False)
        return out.transpose(1, 2)

    def pytorch(q, k, v, beta):
        spec = chunked.Spec(delta, False, chunk)
        return chunked.chunked(spec, q.float(), k.float(), v.float(), beta.float() if delta else None).to(
            v.dtype
        )

    return {
        "attnbench triton": ("triton", ours),
        "fla-core": ("fla", fla_core),
        "attnbench pytorch": (None, pytorch),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--seq-len", type=int, default=16384)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="d_dot x d")
    parser.add_argument("--min-run-time", type=float, default=0.2)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU, or with --device cpu under TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    out = args.output or Path(__file__).parent / "results" / f"triton_vs_fla-{args.device}.json"
    rows: list[dict] = []
    header = {"machine": machine_env(), "args": vars(args) | {"output": str(out)}}
    dtype = getattr(torch, args.dtype)
    for shape in args.shapes:
        f, d = (int(x) for x in shape.split("x"))
        q, k, v, beta = inputs(args.batch, args.heads, args.seq_len, f, d, dtype, args.device)
        for delta in (True, False):
            rule = "delta" if delta else "sum"
            impls = implementations(delta, args.chunk)
            want = impls["attnbench pytorch"][1](q, k, v, beta).float()
            for name, (package, fn) in impls.items():
                row = {"impl": name, "rule": rule, "d_dot": f, "d": d, "status": "ok"}
                if package and importlib.util.find_spec(package) is None:
                    row.update(status="skipped", error=f"package {package} not installed")
                else:
                    try:
                        err = relative_error(fn(q, k, v, beta).float(), want)
                        row["rel_err"] = err
                        if not err < BOUND:
                            row.update(
                                status="error", error=f"output differs from the PyTorch form: {err:.2e}"
                            )
                        else:
                            timing = time_fn(
                                lambda fn=fn, args=(q, k, v, beta): fn(*args),
                                device=args.device,
                                threads=torch.get_num_threads(),
                                min_run_time=args.min_run_time,
                            )
                            row.update(
                                ms=timing.median_s * 1e3, q25_ms=timing.q25_s * 1e3, q75_ms=timing.q75_s * 1e3
                            )
                    except Exception as e:  # a row per failure: an OOM, fla's limits, …
                        row.update(
                            status="error", error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                        )
                rows.append(row)
                timing = (
                    f"{row['ms']:.3f} ms [{row['q25_ms']:.3f}-{row['q75_ms']:.3f}]" if "ms" in row else ""
                )
                status = f"{row['status']:8s} {timing} {row.get('error', '')}"
                print(f"{rule:5s} d_dot {f:3d} d {d:3d} {name:18s} {status}")
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({**header, "rows": rows}, indent=1))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

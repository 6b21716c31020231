"""The chunked linear-attention forms against the best softmax path and against this machine's
matmul rate, at one long shape, with issue 19's speed targets checked as ratios within a round.

Each case runs through the harness (`attnbench.runner`, the suites' own timing: torch.utils.benchmark
on CPU, do_bench on GPU), in a fresh worker so that no case inherits another's heap. `--rounds R`:
every round runs all cases in a new shuffled order and then measures the dense fp32 matmul rate
the way `attnbench calibrate` does; each ratio is taken within one round, and the table gives
its median and range over the rounds (this VM drifts by tens of percent between minutes). FLOPs
are each form's own matmul work (`attnbench list` shows the formula).

Targets (issue 19), per round:
- `linear.elu`'s causal forward at ≥ 50 % of the round's matmul rate;
- the delta rule's forward ≤ 2.5× the sum rule's at the same d_dot (DPFP-1, sum-normalised);
- the delta rule's fwd+bwd: time(N) / time(N/2) ≤ 2.3.
`bench.plain_chunk` (`plain_linear.py`, ~20 plain lines of the same arithmetic) and
`bench.elu_stream` (`linear.elu` without its fused CPU kernel: the eager stream) are timed beside them.
`--base-source DIR` runs every case from another checkout too (`git archive REV | tar -x -C DIR`),
right after this one's, labelled `before`. `--clock thread` (with `--threads 1`) times each call
by its thread's CPU time (`thread_clock.py`): on a shared VM, waiting for a core is not counted.

    python benchmarks/linear_speed.py --rounds 5            # CPU, 2 threads, N = 8192
    python benchmarks/linear_speed.py --rounds 3 --clock thread --threads 1 --targets
    python benchmarks/linear_speed.py --device cuda --dtype bfloat16 --seq-len 65536 --heads 16 --d-head 128
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import random
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from attnbench.cases import Case
from attnbench.discovery import add_plugins
from attnbench.env import machine_env
from attnbench.measure.calibrate import measure_matmul
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY
from attnbench.runner.executors import SubprocessExecutor

SOFTMAX = ["softmax.sdpa", "softmax.sdpa_flash", "softmax.sdpa_efficient", "softmax.sdpa_cudnn"]
DPFP_SUM = ("linear.dpfp", (("norm", "sum"),))
DPFP_DELTA = ("linear.dpfp", (("norm", "sum"), ("rule", "delta")))
LINEAR = [
    ("linear.elu", (("chunk", 32),)),
    ("linear.elu", ()),
    ("linear.elu", (("chunk", 128),)),
    ("linear.elu", (("chunk", 256),)),
    ("bench.elu_stream", ()),
    ("bench.plain_chunk", ()),
    ("linear.identity", ()),
    ("linear.dpfp", ()),
    DPFP_SUM,
    DPFP_DELTA,
    ("linear.favor", ()),
    ("linear.t2r", ()),
    ("linear.elu@triton", ()),
    ("linear.dpfp@triton", (("norm", "sum"), ("rule", "delta"))),
    ("external.fla_linear", ()),
    ("external.fla_delta", ()),
]
TRAINING = [("linear.elu", ()), DPFP_DELTA]  # fwd+bwd at N/2 and N
# --targets: what the targets read, with the best CPU softmax path and the plain form beside them
TARGET_CASES = {
    ("softmax.sdpa", "fwd"),
    ("linear.elu", "fwd"),
    ("bench.plain_chunk", "fwd"),
    ("bench.elu_stream", "fwd"),
    ("linear.dpfp[norm=sum]", "fwd"),
    ("linear.dpfp[norm=sum,rule=delta]", "fwd"),
    ("linear.elu", "fwd+bwd"),
    ("linear.dpfp[norm=sum,rule=delta]", "fwd+bwd"),
}


def cases(args) -> list[Case]:
    shape = (args.batch, args.heads, args.seq_len, args.d_head, args.dtype, args.device, True)
    out = [Case(n, p, *shape, "fwd", threads=args.threads) for n, p in [(s, ()) for s in SOFTMAX] + LINEAR]
    for n, p in TRAINING:
        for length in (args.seq_len // 2, args.seq_len):
            out.append(Case(n, p, *shape[:2], length, *shape[3:], "fwd+bwd", threads=args.threads))
    if args.targets:
        out = [c for c in out if (c.label, c.mode) in TARGET_CASES]
    out = [c for c in out if not args.only or any(fnmatch.fnmatchcase(key(c), p) for p in args.only)]
    return [c for c in out if REGISTRY.get(c.variant).available(args.device)]


def key(case: Case) -> str:
    return f"{case.label} {case.mode} N={case.seq_len}"


def targets(rows: dict[str, dict], matmul: float, args) -> dict[str, float]:
    """The issue's ratios in one round (missing cases leave theirs out)."""
    n, half = args.seq_len, args.seq_len // 2
    ms = lambda label, mode="fwd", length=n: rows.get(f"{label} {mode} N={length}", {}).get("latency_ms")
    elu, flops = ms("linear.elu"), rows.get(f"linear.elu fwd N={n}", {}).get("flops")
    delta_fwd = ms("linear.dpfp[norm=sum,rule=delta]")
    sum_fwd = ms("linear.dpfp[norm=sum]")
    small, large = (ms("linear.dpfp[norm=sum,rule=delta]", "fwd+bwd", m) for m in (half, n))
    out = {}
    if elu and flops and matmul:
        out["linear.elu fwd % of matmul (≥ 50)"] = 100 * flops / (elu / 1e3) / matmul
    if delta_fwd and sum_fwd:
        out["delta fwd / sum fwd, DPFP-1 (≤ 2.5)"] = delta_fwd / sum_fwd
    if small and large:
        out[f"delta fwd+bwd N={n} / N={half} (≤ 2.3)"] = large / small
    stream = ms("bench.elu_stream")
    if elu and stream:
        out["eager stream fwd / linear.elu fwd (the fused CPU kernel's gain)"] = stream / elu
    elu_small, elu_large = (ms("linear.elu", "fwd+bwd", m) for m in (half, n))
    if elu_small and elu_large:
        out[f"linear.elu fwd+bwd N={n} / N={half}"] = elu_large / elu_small
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


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
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base-source", type=Path, default=None, help="another checkout, run as `before`")
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled case order")
    parser.add_argument(
        "--clock", choices=("wall", "thread"), default="wall", help="thread: CPU time, 1 thread"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="cases whose 'label mode N=…' matches this glob"
    )
    parser.add_argument("--targets", action="store_true", help="only the cases the targets read")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    if args.clock == "thread" and (args.threads != 1 or args.device != "cpu"):
        parser.error("--clock thread times one CPU thread: use it with --threads 1 on cpu")
    plugins = ["plain_linear.py"] + (["thread_clock.py"] if args.clock == "thread" else [])
    add_plugins([str(Path(__file__).with_name(p)) for p in plugins])  # workers import them too
    settings = MeasureSettings(metrics=("time",), min_run_time=args.min_run_time)
    sides = {"": None} | ({"before": str(args.base_source.resolve())} if args.base_source else {})
    out = args.output or Path(__file__).parent / "results" / f"linear_speed-{args.device}.json"
    header = {
        "machine": machine_env(),
        "args": vars(args) | {"output": str(out), "base_source": str(args.base_source)},
    }
    rounds: list[dict] = []
    save = lambda: out.write_text(
        json.dumps({**header, "rounds": rounds, "summary": summary(rounds, args)}, indent=1)
    )
    order = random.Random(args.seed)
    todo = cases(args)
    for r in range(args.rounds):
        order.shuffle(todo)
        rows: dict[str, dict[str, dict]] = {side: {} for side in sides}
        for case in todo:
            for side, source in sides.items():
                executor = SubprocessExecutor(settings, timeout_s=600, source=source)
                result = executor.run(case)
                executor.close()  # a fresh worker for the next case
                rows[side][key(case)] = {"status": result.status, "error": result.error, **result.metrics}
                print(
                    f"round {r + 1} {side or 'this'} {key(case)}: {result.status} "
                    f"{result.metrics.get('latency_ms', '')}",
                    file=sys.stderr,
                )
        matmul = measure_matmul(args.device, args.dtype, args.threads) if args.device == "cpu" else None
        torch.set_num_threads(args.threads)
        rounds.append(
            {
                "round": r + 1,
                "matmul_flops": matmul,
                "rows": rows,
                "targets": {side: targets(rows[side], matmul, args) for side in sides},
            }
        )
        save()
    show(summary(rounds, args), args)
    print(f"written to {out}", file=sys.stderr)
    return 0


def summary(rounds: list[dict], args) -> dict:
    """Per side and case: latency median and range over rounds, % of the round's matmul rate;
    per side and target: its ratio's median and range."""
    out: dict = {"cases": {}, "targets": {}}
    if not rounds:
        return out
    for side in rounds[0]["rows"]:
        for name in rounds[0]["rows"][side]:
            ok = [rd for rd in rounds if rd["rows"][side].get(name, {}).get("status") == "ok"]
            if not ok:
                out["cases"][f"{side} {name}".strip()] = {"status": rounds[-1]["rows"][side][name]["status"]}
                continue
            lat = [rd["rows"][side][name]["latency_ms"] for rd in ok]
            row = {"latency_ms": spread(lat), "flops": ok[0]["rows"][side][name].get("flops")}
            if row["flops"] and all(rd["matmul_flops"] for rd in ok):
                pct = [
                    100 * row["flops"] / (rd["rows"][side][name]["latency_ms"] / 1e3) / rd["matmul_flops"]
                    for rd in ok
                ]
                row["pct_matmul"] = spread(pct)
            out["cases"][f"{side} {name}".strip()] = row
        names = {t for rd in rounds for t in rd["targets"][side]}
        for t in sorted(names):
            values = [rd["targets"][side][t] for rd in rounds if t in rd["targets"][side]]
            out["targets"][f"{side} {t}".strip()] = spread(values)
    out["matmul_gflops"] = spread([rd["matmul_flops"] / 1e9 for rd in rounds if rd["matmul_flops"]] or [0.0])
    return out


def show(s: dict, args) -> None:
    console = Console(width=170)
    softmax = [
        v["latency_ms"][0] for k, v in s["cases"].items() if k.startswith("softmax.") and "latency_ms" in v
    ]
    best = min(softmax) if softmax else None
    table = Table(
        title=escape(
            f"causal, B={args.batch} H={args.heads} N={args.seq_len} D={args.d_head} {args.dtype} "
            f"{args.device} threads={args.threads}, {args.clock} clock, {args.rounds} round(s): "
            "median [min–max] over rounds"
        )
    )
    for col in ("case", "ms", "× best softmax fwd", "% of the round's matmul rate"):
        table.add_column(col, justify="left" if col == "case" else "right", no_wrap=True)
    for name, row in s["cases"].items():
        if "latency_ms" not in row:
            table.add_row(escape(name), row["status"], "", "")
            continue
        med, lo, hi = row["latency_ms"]
        pct = row.get("pct_matmul")
        table.add_row(
            escape(name),
            f"{med:.1f} [{lo:.1f}–{hi:.1f}]",
            "" if best is None else f"{best / med:.1f}",
            "" if pct is None else f"{pct[0]:.0f} [{pct[1]:.0f}–{pct[2]:.0f}]",
        )
    console.print(table)
    if s.get("matmul_gflops"):
        med, lo, hi = s["matmul_gflops"]
        console.print(f"fp32 matmul rate per round: {med:.0f} [{lo:.0f}–{hi:.0f}] GFLOP/s")
    for name, (med, lo, hi) in s["targets"].items():
        console.print(f"{escape(name)}: {med:.2f} [{lo:.2f}–{hi:.2f}]")


if __name__ == "__main__":
    sys.exit(main())

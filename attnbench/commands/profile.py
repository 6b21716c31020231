"""`attnbench profile CASE`: where one case's time and memory go.

    attnbench profile 'linear.dpfp[rule=delta,norm=sum]' --seq-len 8192 --causal --threads 2
    attnbench profile softmax.naive --seq-len 1024 --mode fwd+bwd
    attnbench profile 3fa2c1 --results results/speed-….jsonl            a case id (or its start)
    attnbench profile linear.elu --results r.jsonl --seq-len 8192 --causal   a label, narrowed
    attnbench profile profiles/linear.elu-B1-H8-N8192-… --by top     print a profile again

The case is measured as a sweep measures it (median latency, exact peak), then, on the same
warm workload, traced and profiled into profiles/<label>-<shape>/ (see
`attnbench.results.profiles`): the trace, the top operators (printed here), the memory
timeline and its figure, and the check of the traced wall time against the median.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from attnbench.cases import DEVICES, DTYPES, MODES, Case, describe, freeze, parse_label
from attnbench.commands import command
from attnbench.commands.common import add_plugin_argument, console, err, load_plugins, warn
from attnbench.errors import UserError
from attnbench.report.terminal import FORMATS

if TYPE_CHECKING:
    from attnbench.results.profiles import Profile

SHAPE_FLAGS = ("batch", "heads", "seq_len", "d_head", "dtype", "device", "causal", "mode", "threads")
MIB = 2**20
HEADERS = {
    "input_shapes": "input shapes",
    "self_ms": "self ms",
    "share_pct": "% of call",
    "total_ms": "total ms",
    "gflop": "GFLOP",
    "gflop_per_s": "GFLOP/s",
    "input_mb": "input MB",
}


def arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.measure.settings import MeasureSettings

    defaults = {f.name: f.default for f in fields(Case)}
    p.add_argument(
        "case",
        help="VARIANT[params] as a suite names it (softmax.naive, 'linear.dpfp[rule=delta,norm=sum]'); "
        "with --results, a case id (or its first characters) or a label; or a profile folder to print "
        "again",
    )
    p.add_argument("--results", type=Path, metavar="FILE", help="pick the case from this results file")
    for name in ("batch", "heads", "seq_len", "d_head"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"(default {defaults[name]})")
    p.add_argument("--dtype", choices=DTYPES, help=f"(default {defaults['dtype']})")
    p.add_argument("--device", choices=DEVICES, help=f"(default {defaults['device']})")
    p.add_argument(
        "--causal", action=argparse.BooleanOptionalAction, help=f"causal mask (default {defaults['causal']})"
    )
    p.add_argument("--mode", choices=MODES, help=f"(default {defaults['mode']})")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's default)")
    root = Path(MeasureSettings.profile_dir)
    p.add_argument("-o", "--output", type=Path, default=root, help=f"profiles folder (default {root})")
    p.add_argument("--top", type=int, default=15, help="operators to print (all are in ops.csv)")
    p.add_argument(
        "--by",
        choices=("op", "shape", "top"),
        default="op",
        help="op: self time per operator (default); shape: per operator and input shapes; top: the "
        "operators the call runs itself, each with everything under it",
    )
    p.add_argument(
        "--min-run-time", type=float, default=MeasureSettings.min_run_time, help="seconds of timed calls"
    )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format of the operator table")
    add_plugin_argument(p)


@command("profile", arguments=arguments, order=35)
def run(args: argparse.Namespace) -> int:
    """profile one case: trace, top operators, memory timeline, checked against its measurement"""
    from attnbench.measure.allocator import steady_cpu_allocator
    from attnbench.measure.settings import MeasureSettings
    from attnbench.report.profiles import draw_profile
    from attnbench.results.profiles import SUMMARY, load_profile
    from attnbench.runner.execute import execute

    if (Path(args.case) / SUMMARY).is_file():  # a profile written before: print it, measure nothing
        print_profile(load_profile(args.case), args)
        return 0
    load_plugins(args.plugin)
    steady_cpu_allocator()  # the allocator a sweep's worker runs with, so the times compare
    case = case_from_results(args) if args.results else case_from_name(args)
    settings = MeasureSettings(
        metrics=("time", "memory"),
        min_run_time=args.min_run_time,
        profile=True,
        profile_dir=str(args.output),
    )
    err.print(f"[bold]profile[/] {escape(describe(case))} (case {case.id})")
    outcome = execute(case, settings)
    if outcome.status == "unsupported":
        raise UserError(f"{describe(case)}: cannot run here: {outcome.error}")
    if outcome.status != "ok":
        err.print(f"[red]{outcome.status}[/]: {escape(str(outcome.error))}")
        return 1
    if "profile" not in outcome.metrics:
        err.print(f"[red]the case ran but its profile failed[/]: {escape(outcome.metrics['profile_error'])}")
        return 1
    profile = load_profile(outcome.metrics["profile"])
    figure = draw_profile(profile)
    print_profile(profile, args)
    console.print(f"memory timeline: {figure}")
    return 0


def case_from_name(args: argparse.Namespace) -> Case:
    """The case named VARIANT[params] with the shape flags given (the Case's defaults for the rest)."""
    import torch

    from attnbench.registry import REGISTRY

    try:
        name, params = parse_label(args.case)
    except ValueError as e:
        raise UserError(str(e)) from None
    cls = REGISTRY.get(name)
    cls.resolve_params(params)  # an unknown parameter fails here, naming the variant's
    given = {k: getattr(args, k) for k in SHAPE_FLAGS if getattr(args, k) is not None}
    given.setdefault("threads", torch.get_num_threads())
    for key in ("batch", "heads", "seq_len", "d_head", "threads"):
        if key in given and given[key] <= 0:
            raise UserError(f"--{key.replace('_', '-')} must be a positive integer, got {given[key]}")
    return Case(name, freeze(params), **given)


def case_from_results(args: argparse.Namespace) -> Case:
    """The one case of the results file whose id starts with, or whose label is, the name
    given, among those the shape flags allow."""
    from attnbench.results.store import read_records

    cases = [Case.from_dict(r["case"]) for r in read_records(args.results, warn=warn)]
    wanted = {k: getattr(args, k) for k in SHAPE_FLAGS if getattr(args, k) is not None}
    hits = [
        c
        for c in cases
        if (c.id.startswith(args.case) or c.label == args.case)
        and all(getattr(c, k) == v for k, v in wanted.items())
    ]
    hits = list({c.id: c for c in hits}.values())  # a resumed file may hold a case twice
    if len(hits) == 1:
        if hits[0].task:
            raise UserError(f"case {hits[0].id} trains a model on a task: profile a benchmark case")
        return hits[0]
    if not hits:
        raise UserError(f"{args.results}: no case has the id or label {args.case!r} with the flags given")
    listed = "; ".join(f"{c.id} {describe(c)}" for c in hits[:5])
    more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
    raise UserError(
        f"{args.results}: {len(hits)} cases match {args.case!r}: narrow with the shape flags or "
        f"give a case id: {listed}{more}"
    )


def print_profile(profile: Profile, args: argparse.Namespace) -> None:
    """The top operators as a table, then the measurement, the trace's check, the roofline
    and the memory peak, one line each."""
    import pandas as pd

    from attnbench.report.profiles import origin_text
    from attnbench.report.roofline import add_roofline
    from attnbench.report.terminal import print_frame

    s = profile.summary
    measured, trace, memory = s["measured"], s["trace"], s["memory"]
    ops = profile.breakdown(args.by).head(args.top)
    text = ("op", "input_shapes")
    table = ops.assign(**{c: ops[c].map(_number) for c in ops.columns if c not in text}).fillna("")
    table = table.rename(columns=HEADERS)
    what = (
        "the call's own operators, each with all under it"
        if args.by == "top"
        else "top operators by self time"
    )
    title = f"{what}, per call ({_number(trace['wall_ms'])} ms under the profiler)"
    print_frame(console, table, title, args.format, right=lambda column: column not in ("op", "input shapes"))
    spread = f"IQR {_number(measured['latency_q25_ms'])}–{_number(measured['latency_q75_ms'])} ms"
    console.print(
        f"measured: median {_number(measured['latency_ms'])} ms ({spread}, {measured['latency_samples']} "
        f"samples, {measured['timer']}); peak {measured['peak_mem_bytes'] / MIB:.2f} MiB (exact)"
    )
    verdict = "within" if trace["within"] else "[yellow]outside[/]"
    console.print(
        f"trace: {len(trace['walls_ms'])} calls, median {_number(trace['wall_ms'])} ms under the profiler = "
        f"{trace['ratio']:.2f} × the timed median ({verdict} ±{trace['tolerance']:.0%}) · "
        f"{escape(str(profile.folder / trace['file']))} (open in https://ui.perfetto.dev)"
    )
    place = add_roofline(pd.DataFrame([{"status": "ok", **measured}])).iloc[0]
    if place["bound"]:
        console.print(
            f"roofline: {_number(place['intensity'])} FLOP per minimal byte, "
            f"{_number(place['achieved_flops'] / 1e9)} GFLOP/s: {place['bound']}, "
            f"{_number(place['roof_pct'])} % of the roof there"
        )
    same = memory["peak_bytes"] == memory["harness_peak_bytes"]
    measured_peak = memory["harness_peak_bytes"]
    check = "the measured peak, to the byte" if same else f"[yellow]measured {measured_peak} bytes[/]"
    reached = f"{escape(str(memory['peak_op']))} ({escape(str(memory['peak_site']))})"
    console.print(
        f"memory: peak {memory['peak_bytes'] / MIB:.2f} MiB at {_number(memory['peak_at_ms'])} ms into "
        f"the call, reached in {reached}; {check}"
    )
    for origin in memory["live_at_peak"][:5]:
        where = escape(origin_text(origin["op"], origin["site"]))
        size, count = origin["bytes"] / MIB, origin.get("tensors", 1)
        console.print(f"  live at the peak: {size:8.2f} MiB in {count:2d} tensor(s)  {where}")


def _number(value) -> str:
    """Three significant digits, without an exponent below a million."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,.0f}" if 1e3 <= abs(value) < 1e6 else f"{value:.3g}"

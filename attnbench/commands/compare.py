"""`attnbench compare BASELINE CURRENT` (or `--base REV --suite NAME`): the regression gate."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.markup import escape

from attnbench.commands import command
from attnbench.commands.common import console, err, load, non_negative_number, probability
from attnbench.errors import UserError
from attnbench.stats import CORRECTIONS

GATES = ("time", "memory", "status")


def arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.report.compare import SPEED_BASES, Rules

    p.add_argument("baseline", type=Path, nargs="?", help="baseline results file (JSON lines)")
    p.add_argument("current", type=Path, nargs="?", help="current results file")
    p.add_argument(
        "--base",
        metavar="REV",
        help="same-job A/B instead of two files: run --suite on git revision REV (a temporary "
        "worktree, nothing installed) and on this checkout, interleaved case by case",
    )
    p.add_argument("--suite", help="with --base: the suite to run on both sides")
    p.add_argument("-o", "--output", type=Path, help="with --base: folder for base.jsonl and head.jsonl")
    p.add_argument(
        "--repeat",
        type=int,
        metavar="R",
        help="with --base: run R rounds, every case once a round on each side (default: the suite's "
        "`repeat`); the gate judges time on replicates only",
    )
    p.add_argument("--reference", default=Rules.reference, help="speed is the ratio to this variant")
    p.add_argument(
        "--alpha",
        type=probability,
        default=Rules.alpha,
        help="replicates: the most a job with no change may raise a speed alarm (default %(default)s)",
    )
    p.add_argument(
        "--min-effect",
        type=non_negative_number,
        default=Rules.min_effect,
        help="replicates: a slowdown smaller than this is never a regression (default %(default)s = 5%%)",
    )
    p.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default=Rules.correction,
        help="replicates: across a job's cases, Benjamini–Hochberg (bh) or Holm (default %(default)s)",
    )
    p.add_argument(
        "--speed-as",
        choices=SPEED_BASES,
        default=Rules.speed,
        help="replicates: compare each case's ratio to --reference round by round (default; across "
        "runs), its latencies (both sides from one job: compare --base; sharper), or its latencies "
        "paired round by round (one job; a signed-rank test; sharpest)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=Rules.threshold,
        help="a single run a side: a ratio this much worse (0.25 = 25%%) …",
    )
    p.add_argument("--noise", type=float, default=Rules.noise, help="… and this many combined spreads worse")
    p.add_argument(
        "--metrics",
        default=",".join(Rules.metrics),
        help="what to gate on, comma-separated: time, memory, status (.ci/run gates on memory,status)",
    )


def ab_run(args: argparse.Namespace) -> tuple[Path, Path]:
    """Run the suite on --base and on this checkout, interleaved; the two results files."""
    from attnbench.runner.ab import run_ab
    from attnbench.runner.rounds import repeats, with_repeat
    from attnbench.runner.sweep import warn_if_busy
    from attnbench.suites import load_suite

    if args.baseline or args.current:
        raise UserError("--base runs both sides itself: give no results files with it")
    if not args.suite:
        raise UserError("--base REV needs --suite NAME (the cases to run on both sides)")
    suite = load_suite(args.suite)
    if suite.task is not None:
        raise UserError(f"--base: suite {suite.name!r} trains models; A/B compares benchmark suites")
    suite = with_repeat(suite, args.repeat)
    cases, repeat = suite.cases(), repeats(suite)
    out = args.output or Path("results") / f"ab-{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    rounds = f" × {repeat} rounds" if repeat > 1 else ""
    where = f"on {escape(args.base)} and here → {out}"
    err.print(f"[bold]A/B[/] {escape(suite.name)}: {len(cases)} cases{rounds} {where}")
    warn_if_busy(err, suite)
    outcome = run_ab(suite, cases, args.base, out, err, repeat=repeat)
    return outcome.base, outcome.head


@command("compare", arguments=arguments, order=50)
def run(args: argparse.Namespace) -> int:
    """the regression gate: exit 1 when CURRENT regressed against BASELINE"""
    import pandas as pd

    from attnbench.report.compare import Rules, compare
    from attnbench.report.terminal import print_frame

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = sorted(set(metrics) - set(GATES))
    if unknown or not metrics:
        raise UserError(f"--metrics {args.metrics!r}: choose from {', '.join(GATES)}")
    if args.base:
        args.baseline, args.current = ab_run(args)
    elif args.suite or args.output or args.repeat:
        raise UserError("--suite, --repeat and -o go with --base REV (same-job A/B)")
    elif args.baseline is None or args.current is None:
        raise UserError("compare needs BASELINE and CURRENT results files, or --base REV --suite NAME")
    base, current = load([args.baseline]), load([args.current])
    rules = Rules(
        reference=args.reference,
        alpha=args.alpha,
        min_effect=args.min_effect,
        correction=args.correction,
        speed=args.speed_as,
        threshold=args.threshold,
        noise=args.noise,
        metrics=metrics,
    )
    result = compare(base, current, rules)
    changes = result.changes
    regressions = [c for c in changes if c.regression]
    if changes:
        table = pd.DataFrame(
            {
                "": "REGRESSION" if c.regression else "",
                "kind": c.kind,
                "case": c.case,
                "baseline": c.base,
                "current": c.current,
                "change": "" if c.change is None else f"{100 * c.change:+.1f}%",
                "95% CI": c.interval,
                "p (corrected)": "" if c.p is None else f"{c.p:.2g}",
            }
            for c in changes
        )
        print_frame(
            console,
            table,
            f"changes from {args.baseline} to {args.current}",
            style=lambda text: "red" if text == "REGRESSION" else None,
            right=lambda column: column in ("change", "p (corrected)"),
        )
    for note in result.notes:
        console.print(escape(note), soft_wrap=True)
    joined = len(set(base["case_id"]) & set(current["case_id"]))
    verdict = f"{len(regressions)} regression(s)" if regressions else "no regression"
    console.print(
        f"{verdict} · {joined} cases compared · {len(changes)} changes listed ({', '.join(metrics)})"
    )
    return 1 if regressions else 0

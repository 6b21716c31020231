"""The `attnbench` command.

    attnbench list [PATTERN] [--json]                 what can be benchmarked here, and why not
    attnbench run --suite speed                       sweep a suite; results/<suite>-<time>.jsonl
    attnbench run --suite ci --executor inline        in this process (fast, no isolation)
    attnbench run --suite speed -o r.jsonl --resume   finish an interrupted sweep
    attnbench show results/speed-*.jsonl --metric peak_mem_bytes --format md
    attnbench calibrate                               this machine's matmul and copy ceilings

Errors a user can cause print one line and exit 2; a run interrupted by Ctrl-C keeps every
finished case (exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich_argparse import RichHelpFormatter

from attnbench.errors import UserError

# piped output is not squeezed to 80 columns: tables stay one row per line
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> Parser:
    parser = Parser(
        prog="attnbench",
        description="Benchmark and profile attention variants.",
        formatter_class=RichHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser(
        "list", help="list registered variants and whether they run here", formatter_class=RichHelpFormatter
    )
    p.add_argument("pattern", nargs="?", help="name, glob (softmax.*) or family")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--plugin", action="append", default=[], help="import MODULE's variants too (repeatable)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run a suite's sweep and write results", formatter_class=RichHelpFormatter)
    p.add_argument("--suite", required=True, help="suite name (suites/NAME.toml) or path to a .toml file")
    p.add_argument("-o", "--output", type=Path, help="results file (default results/<suite>-<time>.jsonl)")
    p.add_argument(
        "--executor",
        choices=["subprocess", "inline"],
        default="subprocess",
        help="subprocess (default): isolate each case; inline: in this process",
    )
    p.add_argument("--resume", action="store_true", help="skip cases already in the results file")
    p.add_argument("--only", help="only variants matching this name, glob or family")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="run every N-th case starting at the I-th (0-based), e.g. 0/4 … 3/4 in four processes",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="run every case on this device")
    p.add_argument("--timeout", type=float, help="seconds per case (default: the suite's timeout_s)")
    p.add_argument(
        "--mem-limit",
        type=float,
        metavar="GIB",
        help="cap the worker's memory (CPU; default 80%% of RAM; 0 for none)",
    )
    p.add_argument("--plugin", action="append", default=[], help="import MODULE's variants too (repeatable)")
    p.add_argument("--metric", help="metric of the summary table (default: the suite's `show`)")
    p.add_argument("--report", action="store_true", help="also write reports/<results name>.html at the end")
    p.add_argument(
        "--corpus",
        type=Path,
        metavar="PATH",
        help="text for language-model tasks instead of the standard library's source: a directory, "
        "a file, or WikiText's wiki.train.raw (wiki.valid.raw beside it)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("show", help="print a results file as a table", formatter_class=RichHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results file(s) (JSON lines)")
    from attnbench.report.table import METRICS
    from attnbench.report.task_tables import CAPACITY_THRESHOLD

    p.add_argument(
        "--metric",
        help=f"one of: {', '.join(METRICS)} (default latency_ms; task results default to the task's table)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=CAPACITY_THRESHOLD,
        help="retrieval results: the best loss under which S counts as retrieved (capacity)",
    )
    p.add_argument("--format", choices=["table", "csv", "md"], default="table", help="output format")
    p.add_argument("--all", action="store_true", help="also show variants that could not run at all")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="also draw the results to FILE (.png or .svg): the metric against N (log-log), "
        "loss against S (retrieval), perplexity against evaluation length (extrapolation)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COL=VALUE",
        help="keep rows where a column has a value, e.g. --where mode=fwd (repeatable)",
    )
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "report",
        help="write one self-contained HTML report (figures, sortable tables) of results files",
        formatter_class=RichHelpFormatter,
    )
    p.add_argument("results", nargs="+", type=Path, help="results file(s) (JSON lines)")
    p.add_argument("-o", "--output", type=Path, help="HTML file (default reports/<first results file>.html)")
    p.add_argument("--title", help="the page's title (default: the suites in the results)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        help="the regression gate: exit 1 when CURRENT regressed against BASELINE",
        formatter_class=RichHelpFormatter,
    )
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
    p.add_argument("--reference", default="softmax.sdpa", help="speed is the ratio to this variant")
    p.add_argument(
        "--threshold", type=float, default=0.25, help="speed: a ratio this much worse (0.25 = 25%%)"
    )
    p.add_argument("--noise", type=float, default=3.0, help="… and this many combined spreads worse")
    p.add_argument(
        "--metrics",
        default="time,memory,status",
        help="what to gate on, comma-separated: time, memory, status (.ci/run gates on memory,status)",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "calibrate", help="measure this machine's matmul and copy ceilings", formatter_class=RichHelpFormatter
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's default)")
    p.add_argument("--dtype", action="append", help="dtype(s) to measure (default: all the device runs)")
    p.add_argument("--force", action="store_true", help="measure again even if cached")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_calibrate)
    return parser


def _plugins(names: list[str]) -> None:
    """Record plugins in the environment so subprocess workers import them too."""
    from attnbench.registry import PLUGINS_ENV, REGISTRY

    if names:
        current = [m for m in os.environ.get(PLUGINS_ENV, "").split(",") if m]
        os.environ[PLUGINS_ENV] = ",".join(dict.fromkeys(current + names))
    REGISTRY.discover()


def cmd_list(args: argparse.Namespace) -> int:
    import torch

    from attnbench.registry import REGISTRY

    _plugins(args.plugin)
    variants = REGISTRY.select(args.pattern) if args.pattern else REGISTRY.all()
    devices = ["cpu", "cuda"]
    rows = []
    for v in variants:
        row = {
            "name": v.name,
            "family": v.family,
            "description": v.description,
            "params": dict(v.params),
            "causal": list(v.causal_modes),
            "devices": list(v.devices),
            "dtypes": list(v.dtypes),
            "modes": list(v.modes),
            "decode_state": v.decode_state,
            "flops": v.flops_formula or None,
            "reference": v.reference or None,
        }
        for d in devices:
            a = v.available(d)
            row[f"available_{d}"] = a.ok
            row[f"reason_{d}"] = a.reason or None
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    table = Table(
        title=f"attnbench variants (torch {torch.__version__})", title_justify="left", header_style="bold"
    )
    for col in ("name", "family", "params", "forms", "devices", "dtypes", *(f"runs on {d}" for d in shown)):
        table.add_column(col, overflow="fold")
    for r in rows:
        forms = ["causal" if c else "full" for c in r["causal"]] + (
            [f"decode ({r['decode_state']})"] if r["decode_state"] else []
        )
        table.add_row(
            r["name"],
            r["family"],
            ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—",
            ", ".join(forms),
            ", ".join(r["devices"]),
            ", ".join(d.replace("bfloat", "bf").replace("float", "f") for d in r["dtypes"]),
            *(
                ("[green]yes[/]" if r[f"available_{d}"] else f"[red]no[/]: {escape(r[f'reason_{d}'])}")
                for d in shown
            ),
        )
    console.print(table)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from attnbench.report.table import LEGEND, metric, pivot, rich_table, status_counts
    from attnbench.report.task_tables import CAPACITY_THRESHOLD
    from attnbench.results import load_results
    from attnbench.runner.sweep import check_output, default_mem_limit, default_results_path, run_sweep
    from attnbench.suites import load_suite

    _plugins(args.plugin)
    suite = load_suite(args.suite)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if args.timeout is not None:
        suite = dataclasses.replace(suite, timeout_s=args.timeout)
    if args.corpus is not None:
        suite = _with_corpus(suite, args.corpus)
    show = metric(args.metric or suite.show).column
    cases = suite.cases(only=args.only, device=args.device)
    if args.shard:
        cases = _shard(cases, args.shard)
    if not cases:
        raise UserError(f"suite {suite.name!r} has no cases{' for --only ' + args.only if args.only else ''}")
    out = args.output or default_results_path(suite.name, resume=args.resume)
    check_output(out, resume=args.resume)
    if args.mem_limit is None:
        mem_limit = default_mem_limit(cases)
    else:
        mem_limit = int(args.mem_limit * 2**30) or None
    err.print(
        f"[bold]{escape(suite.name)}[/]: {len(cases)} cases → {escape(str(out))}  (executor {args.executor})",
        soft_wrap=True,
    )
    try:
        outcome = run_sweep(
            suite,
            cases,
            out=out,
            resume=args.resume,
            executor=args.executor,
            mem_limit=mem_limit,
            console=err,
        )
    except KeyboardInterrupt:
        err.print(f"interrupted: finished cases are in {out}; continue with --resume -o {out}")
        return 130
    df = load_results(out)
    df = df[df["case_id"].isin({c.id for c in cases})]
    if suite.task and not args.metric:
        _print_task_table(df, suite.task.name, "table", CAPACITY_THRESHOLD, title=suite.name)
    else:
        console.print(rich_table(pivot(df, show), f"{suite.name}: {metric(show).title}"))
        console.print(f"[dim]{LEGEND}[/]")
    console.print(
        f"{status_counts(df)} · {outcome.wall_s:.0f} s · results: {out}{_unsupported_note(df, False)}"
    )
    if args.report:
        console.print(f"report: {_write_report(df, Path('reports') / f'{out.stem}.html', None)}")
    if outcome.left:
        console.print(
            f"[yellow]time budget reached: {outcome.left} cases left; "
            f"continue with: attnbench run --suite {args.suite} -o {out} --resume[/]"
        )
    return 0


def _write_report(df, out: Path, title: str | None) -> Path:
    from attnbench.report.html import write_report

    suites = ", ".join(sorted(df["suite"].dropna().astype(str).unique())) or "results"
    return write_report(df, out, title=title or f"attnbench report: {suites}")


def cmd_report(args: argparse.Namespace) -> int:
    from attnbench.results import load_results

    df = load_results(*args.results, on_warning=lambda msg: err.print(f"[yellow]warning:[/] {escape(msg)}"))
    out = args.output or Path("reports") / f"{args.results[0].stem}.html"
    console.print(f"report: {_write_report(df, out, args.title)}")
    return 0


def _ab_run(args: argparse.Namespace) -> tuple[Path, Path]:
    """Run the suite on --base and on this checkout, interleaved; the two results files."""
    import time

    from attnbench.runner.ab import run_ab
    from attnbench.suites import load_suite

    if args.baseline or args.current:
        raise UserError("--base runs both sides itself: give no results files with it")
    if not args.suite:
        raise UserError("--base REV needs --suite NAME (the cases to run on both sides)")
    suite = load_suite(args.suite)
    if suite.task is not None:
        raise UserError(f"--base: suite {suite.name!r} trains models; A/B compares benchmark suites")
    cases = suite.cases()
    out = args.output or Path("results") / f"ab-{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    err.print(
        f"[bold]A/B[/] {escape(suite.name)}: {len(cases)} cases on {escape(args.base)} and here → {out}"
    )
    outcome = run_ab(suite, cases, args.base, out, err)
    return outcome.base, outcome.head


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from attnbench.report.compare import Rules, compare
    from attnbench.results import load_results

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    unknown = sorted(set(metrics) - {"time", "memory", "status"})
    if unknown or not metrics:
        raise UserError(f"--metrics {args.metrics!r}: choose from time, memory, status")
    say = lambda msg: err.print(f"[yellow]warning:[/] {escape(msg)}")
    if args.base:
        args.baseline, args.current = _ab_run(args)
    elif args.suite or args.output:
        raise UserError("--suite and -o go with --base REV (same-job A/B)")
    elif args.baseline is None or args.current is None:
        raise UserError("compare needs BASELINE and CURRENT results files, or --base REV --suite NAME")
    base, current = load_results(args.baseline, on_warning=say), load_results(args.current, on_warning=say)
    rules = Rules(reference=args.reference, threshold=args.threshold, noise=args.noise, metrics=metrics)
    changes = compare(base, current, rules)
    regressions = [c for c in changes if c.regression]
    if changes:
        table = Table(title=f"changes from {escape(str(args.baseline))} to {escape(str(args.current))}")
        for column in ("", "kind", "case", "baseline", "current", "change"):
            table.add_column(column)
        for c in changes:
            mark = "[red]REGRESSION[/]" if c.regression else ""
            pct = "" if c.change is None else f"{100 * c.change:+.1f}%"
            table.add_row(mark, c.kind, escape(c.case), escape(c.base), escape(c.current), pct)
        console.print(table)
    joined = len(set(base["case_id"]) & set(current["case_id"]))
    verdict = f"{len(regressions)} regression(s)" if regressions else "no regression"
    console.print(
        f"{verdict} · {joined} cases compared · {len(changes)} changes listed ({', '.join(metrics)})"
    )
    return 1 if regressions else 0


def cmd_show(args: argparse.Namespace) -> int:
    from attnbench.report.table import LEGEND, metric, pivot, rich_table, status_counts
    from attnbench.report.task_tables import task_name
    from attnbench.results import load_results

    df = load_results(*args.results, on_warning=lambda msg: err.print(f"[yellow]warning:[/] {escape(msg)}"))
    df = _where(df, args.where)
    task = task_name(df)
    if task and args.metric is None:
        _print_task_table(df, task, args.format, args.threshold, unsupported=args.all)
        if args.plot and task == "retrieval":
            from attnbench.report.figures import plot_capacity

            err.print(f"figure: {plot_capacity(df, args.plot, threshold=args.threshold)}")
        elif args.plot and task in ("extrapolation", "decode"):
            from attnbench.report import figures

            draw = figures.plot_extrapolation if task == "extrapolation" else figures.plot_decode
            err.print(f"figure: {draw(df, args.plot)}")
        elif args.plot:
            raise UserError(
                f"--plot draws benchmark, retrieval and extrapolation results, not {task} results"
            )
        return 0
    m = metric(args.metric or "latency_ms")
    table = pivot(df, m.column, raw=args.format == "csv", unsupported=args.all)
    if args.format == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif args.format == "md":
        print(f"{m.title}\n")
        print(table.to_markdown(index=False))
    else:
        console.print(rich_table(table, m.title))
        console.print(f"[dim]{LEGEND}[/]")
        console.print(status_counts(df) + _unsupported_note(df, args.all))
    if args.plot:
        from attnbench.report.figures import plot_vs_seq_len

        title = m.title.split(" (")[0] + (f" ({', '.join(args.where)})" if args.where else "")
        err.print(f"figure: {plot_vs_seq_len(df, m.column, args.plot, title=title)}")
    return 0


def _with_corpus(suite, path: Path):
    """The suite with its task reading `path` (absolute, so a results row names the text)."""
    from attnbench.tasks import get_task

    if suite.task is None or "corpus" not in get_task(suite.task.name).params:
        raise UserError(f"--corpus: suite {suite.name!r} has no language-model task to read a corpus")
    if not path.exists():
        raise UserError(f"--corpus {path}: no such file or directory")
    return dataclasses.replace(suite, task=suite.task.with_param("corpus", str(path.resolve())))


def _shard(cases: list, spec: str) -> list:
    index, sep, count = spec.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UserError(f"--shard {spec!r}: expected I/N with 0 ≤ I < N, e.g. 0/4")
    return cases[int(index) :: int(count)]


def _print_task_table(
    df, task: str, fmt: str, threshold: float, *, title: str = "", unsupported: bool = False
) -> None:
    from attnbench.report.table import rich_table, status_counts
    from attnbench.report.task_tables import TITLES, task_table

    table = task_table(df, task, threshold=threshold, raw=fmt == "csv", unsupported=unsupported)
    heading = f"{title + ': ' if title else ''}{TITLES[task]}"
    if fmt == "csv":
        sys.stdout.write(table.to_csv(index=False))
    elif fmt == "md":
        print(f"{heading}\n")
        print(table.to_markdown(index=False))
    else:
        console.print(rich_table(table, heading))
        console.print(status_counts(df) + _unsupported_note(df, unsupported))


def _where(df, conditions: list[str]):
    """Filter rows by COL=VALUE, comparing as text (so causal=True and seq_len=512 work)."""
    for cond in conditions:
        col, sep, value = cond.partition("=")
        if not sep or col not in df:
            known = ", ".join(c for c in df.columns if not c.startswith("latency_"))
            raise UserError(f"--where {cond!r}: expected COL=VALUE with COL one of {known}")
        df = df[df[col].astype(str) == value]
    if df.empty:
        raise UserError(f"no results match --where {' '.join(conditions)}")
    return df


def _unsupported_note(df, shown: bool) -> str:
    skipped = sorted(set(df.loc[df["status"] == "unsupported", "label"]))
    hidden = [label for label in skipped if (df.loc[df["label"] == label, "status"] == "unsupported").all()]
    if shown or not hidden:
        return ""
    return f" · not shown, could not run here: {', '.join(hidden)} (--all shows them)"


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch

    from attnbench.measure.calibrate import ceilings

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    threads = args.threads or torch.get_num_threads()
    default = ("float32", "bfloat16", "float16") + (("float64",) if args.device == "cpu" else ())
    ceil = ceilings(args.device, threads, tuple(args.dtype or default), force=args.force)
    if args.json:
        print(json.dumps(dataclasses.asdict(ceil), indent=2))
        return 0
    table = Table(
        title=f"ceilings of {ceil.device_name} ({args.device}, {threads} threads)", title_justify="left"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for dtype, rate in sorted(ceil.matmul_flops.items()):
        table.add_row(f"matmul {dtype}", f"{rate / 1e12:.3f} TFLOP/s")
    table.add_row("memory copy (read + write)", f"{ceil.copy_bytes_per_s / 1e9:.1f} GB/s")
    console.print(table)
    console.print(f"[dim]cached (measured {ceil.measured_at}); results report % of these[/]")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"attnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

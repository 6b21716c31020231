"""`attnbench show RESULTS…`: results as a table (one metric against N, or a task's own table),
and `--plot` to draw them."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.commands import command
from attnbench.commands.common import (
    add_plugin_argument,
    console,
    err,
    filter_rows,
    load,
    load_plugins,
    print_task_table,
    task_options,
    unsupported_note,
    warn,
)
from attnbench.report.terminal import FORMATS


def arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.report.table import METRICS
    from attnbench.results.runs import COMBINE
    from attnbench.tasks import all_tasks

    p.add_argument("results", nargs="+", type=Path, help="results file(s) (JSON lines)")
    p.add_argument(
        "--metric",
        help=f"one or several, comma-separated, of: {', '.join(METRICS)} (default latency_ms; "
        "task results default to the task's table)",
    )
    p.add_argument(
        "--baseline",
        metavar="VARIANT",
        help="add each case's ratio to this variant at the same shape (latency: its speed-up; "
        "others: case ÷ baseline), e.g. --baseline softmax.sdpa",
    )
    p.add_argument(
        "--combine",
        choices=COMBINE,
        help="several files measuring the same cases: one row per case (median or min of each metric, "
        "or the last file's) instead of one row per file",
    )
    for task in all_tasks():  # each task's own options, e.g. retrieval's --threshold
        for name, option in task.options.items():
            if f"--{name}" not in p._option_string_actions:
                p.add_argument(
                    f"--{name}", type=option.type, help=f"{option.help} (default {option.default})"
                )
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--all", action="store_true", help="also show variants that could not run at all")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="also draw the results to FILE (.png or .svg): the metric against N (log-log), "
        "or the task's own figure (loss against S for retrieval, …)",
    )
    p.add_argument(
        "--roofline",
        action="store_true",
        help="each timed case on this machine's roofline: intensity, GFLOP/s, compute- or memory-bound, "
        "%% of the roof (with --plot: the roofline figure, one per device and dtype)",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COL=VALUE",
        help="keep rows where a column has a value, e.g. --where mode=fwd (repeatable)",
    )
    add_plugin_argument(p)


@command("show", arguments=arguments, order=30)
def run(args: argparse.Namespace) -> int:
    """print a results file as a table"""
    from attnbench.report.ratios import metric_names, metrics_table
    from attnbench.report.table import LEGEND, pivot, status_counts
    from attnbench.report.terminal import print_frame
    from attnbench.tasks import task_of_results

    load_plugins(args.plugin)
    if args.plot:
        from attnbench.report.figures import check_figure_path

        check_figure_path(args.plot)
    df = filter_rows(load(args.results, runs=True), args.where)
    df = as_runs(df, args.combine)
    if args.roofline:
        return show_roofline(df, args)
    name = task_name(df)
    if name and args.metric is None:
        options = task_options(args, name)
        print_task_table(df, name, args.format, options, unsupported=args.all)
        if args.plot:
            err.print(f"figure: {task_of_results(name).figure(df, args.plot, **options)}")
        return 0
    chosen = metric_names(args.metric or "latency_ms")
    if len(chosen) > 1 or args.baseline:
        raw = args.format == "csv"
        table = metrics_table(df, chosen, baseline=args.baseline, raw=raw, unsupported=args.all)
        what = ", ".join(m.title for m in chosen)
        print_frame(
            console, table, what + (f"; ratios to {args.baseline}" if args.baseline else ""), args.format
        )
        if args.format == "table":
            console.print(f"[dim]{LEGEND}[/]")
            console.print(status_counts(df) + unsupported_note(df, args.all))
        return 0
    m = chosen[0]
    table = pivot(df, m.column, raw=args.format == "csv", unsupported=args.all)
    print_frame(console, table, m.title, args.format)
    if args.format == "table":
        console.print(f"[dim]{LEGEND}[/]")
        console.print(status_counts(df) + unsupported_note(df, args.all))
    if args.plot:
        from attnbench.report.figures import plot_vs_seq_len

        title = m.title.split(" (")[0] + (f" ({', '.join(args.where)})" if args.where else "")
        err.print(f"figure: {plot_vs_seq_len(df, m.column, args.plot, title=title)}")
    return 0


def as_runs(df, combine: str | None):
    """Several files' records: combined into one row per case (`combine`), or each kept with
    its `run`, saying which cases the runs measured differently beyond their spread."""
    from attnbench.results.runs import combine as combined
    from attnbench.results.runs import disagreements

    if "run" not in df:
        return df
    if combine:
        return combined(df, combine)
    lines = disagreements(df)
    for line in lines[:10]:
        warn(f"runs disagree: {line}")
    if len(lines) > 10:
        warn(f"runs disagree on {len(lines) - 10} more cases")
    shared = int(df["case_id"].duplicated().sum())
    err.print(
        f"[dim]{shared} measurements of cases another file also measured: each kept as its own row "
        "(column run); --combine median gives one row per case[/]",
        soft_wrap=True,
    )
    return df


def show_roofline(df, args: argparse.Namespace) -> int:
    from attnbench.report.roofline import plot_roofline, roofline_table
    from attnbench.report.terminal import print_frame

    numbers = ("N", "FLOP/B", "GFLOP/s", "roof GFLOP/s", "% of roof")
    print_frame(
        console,
        roofline_table(df),
        "roofline: each case against this machine's measured ceilings",
        args.format,
        right=lambda column: column in numbers,
    )
    for path in plot_roofline(df, args.plot) if args.plot else ():
        err.print(f"figure: {path}")
    return 0


def task_name(df) -> str | None:
    """The task the results come from, or None for benchmark results (one task per table)."""
    from attnbench.errors import UserError
    from attnbench.results.frame import task_column

    names = sorted(task_column(df).dropna().unique())
    if len(names) > 1:
        raise UserError(
            f"these results mix tasks ({', '.join(names)}): show one at a time (--where task.name=…)"
        )
    return names[0] if names else None

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
)
from attnbench.report.terminal import FORMATS


def arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.report.table import METRICS
    from attnbench.tasks import all_tasks

    p.add_argument("results", nargs="+", type=Path, help="results file(s) (JSON lines)")
    p.add_argument(
        "--metric",
        help=f"one of: {', '.join(METRICS)} (default latency_ms; task results default to the task's table)",
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
    from attnbench.report.table import LEGEND, metric, pivot, status_counts
    from attnbench.report.terminal import print_frame
    from attnbench.tasks import task_of_results

    load_plugins(args.plugin)
    if args.plot:
        from attnbench.report.figures import check_figure_path

        check_figure_path(args.plot)
    df = filter_rows(load(args.results), args.where)
    if args.roofline:
        return show_roofline(df, args)
    name = task_name(df)
    if name and args.metric is None:
        options = task_options(args, name)
        print_task_table(df, name, args.format, options, unsupported=args.all)
        if args.plot:
            err.print(f"figure: {task_of_results(name).figure(df, args.plot, **options)}")
        return 0
    m = metric(args.metric or "latency_ms")
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

"""`attnbench report RESULTS…`: one self-contained HTML file of results files."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnbench.commands import command
from attnbench.commands.common import add_plugin_argument, console, load, load_plugins, write_report


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", type=Path, help="results file(s) (JSON lines)")
    p.add_argument("-o", "--output", type=Path, help="HTML file (default reports/<first results file>.html)")
    p.add_argument("--title", help="the page's title (default: the suites in the results)")
    add_plugin_argument(p)


@command("report", arguments=arguments, order=40)
def run(args: argparse.Namespace) -> int:
    """write one self-contained HTML report (figures, sortable tables) of results files"""
    load_plugins(args.plugin)
    df = load(args.results)
    out = args.output or Path("reports") / f"{args.results[0].stem}.html"
    console.print(f"report: {write_report(df, out, args.title)}")
    return 0

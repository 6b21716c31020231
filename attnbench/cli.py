"""The `attnbench` command: the parser and the dispatch. Each command is a module of
`attnbench.commands` (see there to add one).

    attnbench list [PATTERN] [--json]                 what can be benchmarked here, and why not
    attnbench run --suite speed                       sweep a suite; results/<suite>-<time>.jsonl
    attnbench run --suite ci --executor inline        in this process (fast, no isolation)
    attnbench run --suite speed -o r.jsonl --resume   finish an interrupted sweep
    attnbench show results/speed-*.jsonl --metric peak_mem_bytes --format md
    attnbench show results/speed-*.jsonl --roofline --plot roofline.png
    attnbench profile 'linear.dpfp[rule=delta,norm=sum]' --seq-len 8192 --causal   profiles/…
    attnbench report results/speed-*.jsonl            one self-contained HTML file
    attnbench compare BASE.jsonl CURRENT.jsonl        the regression gate
    attnbench calibrate                               this machine's matmul and copy ceilings

Errors a user can cause print one line and exit 2; a run stopped by Ctrl-C or SIGTERM keeps
every finished case and says how to resume (exit 130 and 143).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from rich_argparse import RichHelpFormatter

from attnbench import signals
from attnbench.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> Parser:
    from attnbench.commands import COMMANDS

    parser = Parser(
        prog="attnbench",
        description="Benchmark and profile attention variants.",
        formatter_class=RichHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for cmd in sorted(COMMANDS.items().values(), key=lambda c: (c.order, c.name)):
        p = sub.add_parser(cmd.name, help=cmd.help, formatter_class=RichHelpFormatter)
        cmd.arguments(p)
        p.set_defaults(func=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        with signals.sigterm_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            args = build_parser().parse_args(argv)
            return args.func(args)
    except UserError as e:
        print(f"attnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"attnbench: {signals.describe(stop)}", file=sys.stderr)
        return signals.exit_code(stop)


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (from torch, pandas, …) as one `warning:` line, not a source excerpt."""
    from attnbench.commands.common import warn

    text = str(message).strip().splitlines()
    warn(f"{text[0] if text else category.__name__} ({category.__name__})")


if __name__ == "__main__":
    sys.exit(main())

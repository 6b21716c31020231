"""The `attnbench` commands, one module each: `list`, `run`, `show`, `report`, `compare`,
`calibrate`, … A command is one function decorated with `@command`, found like a variant (every
module under `attnbench/commands/`, the `attnbench.commands` entry-point group, plugins), and
`attnbench.cli` builds the parser from them::

    from attnbench.commands import command

    def arguments(p):
        p.add_argument("results", nargs="+")

    @command("count", arguments=arguments)
    def run(args) -> int:
        "count the cases in results files"  # the docstring's first line is the help
        ...
        return 0
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from attnbench.discovery import Catalog


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the command's arguments
    run: Callable[[argparse.Namespace], int]  # returns the exit code
    order: int = 100  # place in `attnbench --help`


COMMANDS: Catalog[Command] = Catalog("command", ("attnbench.commands",), "attnbench.commands")


def command(
    name: str, *, arguments: Callable[[argparse.ArgumentParser], None], order: int = 100
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated function as command `name`; its docstring's first line is the
    command's help, `arguments(parser)` adds its arguments."""

    def decorate(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        help = (fn.__doc__ or "").strip().split("\n", 1)[0]
        COMMANDS.add(
            name,
            Command(name, help, arguments, fn, order),
            same=lambda a, b: a.run.__qualname__ == b.run.__qualname__,
        )
        return fn

    return decorate

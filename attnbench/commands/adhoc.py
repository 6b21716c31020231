"""The ad-hoc form of `attnbench run`: `attnbench run VARIANT… --seq-len 4096 16384 …` builds
its suite from the flags (see `attnbench.adhoc`), checked as a suite file is; `--save-suite`
writes that file."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.commands.common import err
from attnbench.errors import UserError

if TYPE_CHECKING:
    from attnbench.suites import Suite

# the flags that only an ad-hoc run takes (a suite file sets these itself)
AXIS_FLAGS = ("batch", "heads", "seq_len", "d_head", "dtype", "causal", "mode", "threads")
SETTING_FLAGS = ("metrics", "min_run_time", "param", "save_suite")


def add_adhoc_arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.adhoc import CAUSAL
    from attnbench.cases import DTYPES, MODES, Case
    from attnbench.measure.settings import METRIC_GROUPS, MeasureSettings

    p.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        help="run these variants (names, globs such as 'linear.*', or families) without a suite file",
    )
    defaults = {f.name: f.default for f in fields(Case)}
    group = p.add_argument_group(
        "ad-hoc sweep", "with VARIANT…, instead of --suite; an axis not given takes a case's default"
    )
    for name in ("batch", "heads", "seq_len", "d_head"):
        flag = f"--{name.replace('_', '-')}"
        group.add_argument(flag, type=int, nargs="+", metavar="N", help=f"(default {defaults[name]})")
    group.add_argument("--threads", type=int, nargs="+", metavar="N", help="(default: torch's thread count)")
    group.add_argument(
        "--dtype", nargs="+", metavar="DTYPE", help=f"{', '.join(DTYPES)} (default {defaults['dtype']})"
    )
    group.add_argument("--causal", choices=CAUSAL, help="causal mask: no (default), yes or both")
    group.add_argument(
        "--mode", nargs="+", metavar="MODE", help=f"{', '.join(MODES)} (default {defaults['mode']})"
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:KEY=V1,V2",
        help="sweep a variant's parameter, e.g. linear.dpfp:nu=1,2,3 (repeatable)",
    )
    group.add_argument(
        "--metrics", metavar="A,B", help=f"metric groups among {', '.join(METRIC_GROUPS)} (default all)"
    )
    group.add_argument(
        "--min-run-time",
        type=float,
        metavar="S",
        help=f"timed seconds per case (default {MeasureSettings.min_run_time})",
    )
    group.add_argument(
        "--save-suite", type=Path, metavar="FILE", help="also write the equivalent suite file (for --suite)"
    )


def suite_of(args: argparse.Namespace) -> Suite:
    """The suite to run: the --suite file, or the ad-hoc suite of VARIANT… and its flags."""
    from attnbench.adhoc import CAUSAL, build_suite, cli_origin, params_from_flags, suite_tables, to_toml
    from attnbench.suites import load_suite

    given = [f for f in (*AXIS_FLAGS, *SETTING_FLAGS) if getattr(args, f) not in (None, [])]
    if args.suite:
        if args.variants:
            raise UserError(f"give --suite or VARIANT…, not both ({' '.join(args.variants)})")
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UserError(f"{flag} is for an ad-hoc run (VARIANT…); with --suite, the suite file sets it")
        return load_suite(args.suite)
    if not args.variants:
        raise UserError("say what to run: VARIANT… (e.g. softmax.sdpa linear.elu) or --suite NAME")
    axes = {f: getattr(args, f) for f in AXIS_FLAGS}
    axes["causal"] = CAUSAL[args.causal] if args.causal else None
    meta = {"min_run_time_s": args.min_run_time, "timeout_s": args.timeout}
    if args.metrics is not None:
        meta["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    tables = suite_tables(
        args.variants,
        axes,
        params=params_from_flags(args.param),
        meta=meta,
        description="attnbench run " + " ".join(args.variants),
    )
    suite = build_suite(tables, origin=cli_origin(tables))
    if args.save_suite:
        try:
            args.save_suite.write_text(to_toml(tables))
        except OSError as e:
            raise UserError(f"--save-suite {args.save_suite}: {e.strerror or e}") from None
        err.print(f"suite file: {args.save_suite} (run it again with --suite {args.save_suite})")
    return suite

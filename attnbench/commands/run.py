"""`attnbench run --suite NAME` or `attnbench run VARIANT… --seq-len N…` (an ad-hoc suite, see
`commands/adhoc.py`): sweep the cases through an executor into a results file, then print its
table (and write the HTML report with `--report`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from attnbench import signals
from attnbench.commands import command
from attnbench.commands.adhoc import add_adhoc_arguments, suite_of
from attnbench.commands.common import (
    add_plugin_argument,
    console,
    err,
    load_plugins,
    non_negative_number,
    positive_integer,
    positive_number,
    print_task_table,
    unsupported_note,
    warn,
    write_report,
)
from attnbench.commands.planning import available_cases, named, print_plan, still_to_run, warn_if_long
from attnbench.errors import UserError

CORPUS_HELP = (
    "text for language-model tasks instead of the standard library's source: a directory, a file, "
    "or WikiText's wiki.train.raw (wiki.valid.raw beside it)"
)


def arguments(p: argparse.ArgumentParser) -> None:
    from attnbench.runner.executors import EXECUTORS

    add_adhoc_arguments(p)
    p.add_argument("--suite", help="suite name (suites/NAME.toml) or path to a .toml file")
    p.add_argument("-o", "--output", type=Path, help="results file (default results/<suite>-<time>.jsonl)")
    p.add_argument(
        "--executor",
        choices=EXECUTORS.names(),
        default="subprocess",
        help="subprocess (default): isolate each case; inline: in this process; ray: on a Ray cluster, "
        "many cases at once (pip install 'attnbench[ray]')",
    )
    p.add_argument(
        "--address",
        help="with --executor ray: the Ray cluster to join (`auto`: the one `ray start` made here; "
        "default: start a local Ray instance)",
    )
    p.add_argument(
        "--max-parallel",
        type=positive_integer,
        metavar="K",
        help="with --executor ray: at most K cases at once (default: as many as the cluster holds)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="where trained checkpoints and calibrations are kept (default $ATTNBENCH_CACHE_DIR or "
        "~/.cache/attnbench); a folder every node sees lets a cluster train each model once",
    )
    p.add_argument("--resume", action="store_true", help="skip cases already in the results file")
    p.add_argument(
        "--repeat",
        type=int,
        metavar="R",
        help="replicates: time every case R times, in R rounds of shuffled order, each with its own "
        "median; tables show the median of the R and its 95%% interval (suite key `repeat`; tasks run once)",
    )
    p.add_argument("--only", help="only variants matching this name, glob or family")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="run every N-th case starting at the I-th (0-based), e.g. 0/4 … 3/4 in four processes",
    )
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="task suites: train every point with seeds 0 … N−1 (replaces the suite's [task] seeds)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="run every case on this device")
    p.add_argument(
        "--timeout", type=positive_number, help="seconds per case (default: the suite's timeout_s)"
    )
    p.add_argument(
        "--mem-limit",
        type=non_negative_number,
        metavar="GIB",
        help="cap the worker's memory (CPU; default 80%% of RAM; 0 for none)",
    )
    add_plugin_argument(p)
    p.add_argument(
        "--profile",
        nargs="?",
        const=True,
        metavar="VARIANTS",
        help="also profile each case (or the cases of these variants: names, globs, families) into "
        "profiles/<label>-<shape>/, linked from its record (suite key `profile`)",
    )
    p.add_argument(
        "--budget",
        type=positive_number,
        metavar="S",
        help="start no case after S seconds; continue later with --resume (default: the suite's budget_s)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the cases by variant (run here / unsupported and why) and the time they should take",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="also run variants a family or glob selects that cannot run on this device (as unsupported)",
    )
    p.add_argument("--metric", help="metric of the summary table (default: the suite's `show`)")
    p.add_argument("--report", action="store_true", help="also write reports/<results name>.html at the end")
    p.add_argument("--title", help="title of the --report page")
    p.add_argument("--corpus", type=Path, metavar="PATH", help=CORPUS_HELP)


@command("run", arguments=arguments, order=20)
def run(args: argparse.Namespace) -> int:
    """run a suite's sweep, or variants at the shapes given, and write results"""
    import torch

    from attnbench.env import CACHE_ENV
    from attnbench.report.table import metric
    from attnbench.results import load_results
    from attnbench.runner.executors import check_executor
    from attnbench.runner.rounds import with_repeat
    from attnbench.runner.sweep import default_mem_limit, default_results_path, run_sweep

    load_plugins(args.plugin)
    executor_options = {"address": args.address, "max_parallel": args.max_parallel}
    check_executor(args.executor, executor_options)
    if args.cache_dir is not None:
        os.environ[CACHE_ENV] = str(args.cache_dir.resolve())  # workers, here or on other nodes, read it
    suite = suite_of(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if args.timeout is not None:
        suite = dataclasses.replace(suite, timeout_s=args.timeout)
    if args.budget is not None:
        suite = dataclasses.replace(suite, budget_s=args.budget)
    suite = with_repeat(suite, args.repeat)
    if args.corpus is not None:
        suite = with_corpus(suite, args.corpus)
    if args.seeds is not None:
        suite = with_seeds(suite, args.seeds)
    if args.profile is not None:
        suite = dataclasses.replace(suite, settings=dataclasses.replace(suite.settings, profile=args.profile))
    show = metric(args.metric or suite.show).column
    cases = suite.cases(only=args.only, device=args.device)
    if not cases:
        raise UserError(f"suite {suite.name!r} has no cases{' for --only ' + args.only if args.only else ''}")
    if not args.all:
        cases = available_cases(cases, suite.named_variants() | named(args.only))
    if args.shard:
        cases = shard(cases, args.shard)
    if suite.settings.profile and suite.task is not None:
        raise UserError(f"profile: suite {suite.name!r} trains models on a task; profiles are of benchmarks")
    if suite.settings.profile and not any(suite.settings.profiles(c.variant, c.label) for c in cases):
        raise UserError(f"profile {suite.settings.profile!r} selects none of suite {suite.name!r}'s cases")
    if suite.task is not None:
        warn_caveats(cases)
    out = args.output or default_results_path(suite.name, resume=args.resume, shard=args.shard)
    todo = still_to_run(suite, cases, out) if args.resume else cases
    if args.dry_run:
        print_plan(suite, todo, out, calibrate=True, done=len(cases) - len(todo))
        return 0
    warn_if_long(suite, todo, out)
    if args.mem_limit is None:
        mem_limit = default_mem_limit(cases)
    else:
        mem_limit = int(args.mem_limit * 2**30) or None
    try:
        outcome = run_sweep(
            suite,
            cases,
            out=out,
            resume=args.resume,
            executor=args.executor,
            mem_limit=mem_limit,
            console=err,
            executor_options=executor_options,
        )
    except KeyboardInterrupt as stop:
        err.print(
            f"{signals.describe(stop)}: finished cases are in {out}; continue with --resume -o {out}",
            soft_wrap=True,
            markup=False,
        )
        return signals.exit_code(stop)
    df = load_results(out, on_warning=warn)  # a skipped line is a warning, not a Python warning
    if df.empty:  # the budget ran out before the first case
        console.print(f"no case finished · {outcome.wall_s:.0f} s · results: {out}")
    else:
        summarise(df[df["case_id"].isin({c.id for c in cases})], suite, args, show, outcome, out)
    if outcome.left:
        console.print(
            f"[yellow]time budget reached: {outcome.left} cases left; "
            f"continue with: attnbench run {f'--suite {args.suite}' if args.suite else '…'} "
            f"-o {out} --resume[/]"
        )
    return 0


def summarise(df, suite, args: argparse.Namespace, show: str, outcome, out: Path) -> None:
    """The end of a run: its table, status counts, profiles and the report."""
    from attnbench.report.table import LEGEND, machines, metric, pivot, status_counts
    from attnbench.report.terminal import print_frame

    if suite.task and not args.metric:
        print_task_table(df, suite.task.name, "table", {}, title=suite.name)
    else:
        print_frame(console, pivot(df, show), f"{suite.name}: {metric(show).title}")
        console.print(f"[dim]{LEGEND}[/]")
    console.print(
        f"{status_counts(df)} · {outcome.wall_s:.0f} s · results: {out}{unsupported_note(df, False)}"
    )
    if machines(df):
        console.print(f"hosts: {machines(df)}", soft_wrap=True)
    draw_profiles(df)
    if args.report:
        console.print(f"report: {write_report(df, Path('reports') / f'{out.stem}.html', args.title)}")


def draw_profiles(df) -> None:
    """Each profile's memory timeline, drawn here rather than in the worker (which has no
    need of matplotlib), and where the profiles are."""
    from attnbench.report.profiles import draw_profile, linked_profiles

    profiles, missing = linked_profiles(df)
    for profile in profiles:
        draw_profile(profile)
    if profiles:
        folders = sorted({str(p.folder.parent) for p in profiles})
        console.print(f"profiles: {len(profiles)} under {', '.join(folders)} (each record links its own)")
    for folder in missing:
        warn(f"profile {folder} was not written")
    if "profile_error" in df:
        for _, row in df[df["profile_error"].notna()].iterrows():
            warn(f"{row['label']} N={row['seq_len']}: its profile failed: {row['profile_error']}")


def with_corpus(suite, path: Path):
    """The suite with its task reading `path` (absolute, so a results row names the text)."""
    from attnbench.tasks import get_task

    if suite.task is None or "corpus" not in get_task(suite.task.name).params:
        raise UserError(f"--corpus: suite {suite.name!r} has no language-model task to read a corpus")
    if not path.exists():
        raise UserError(f"--corpus {path}: no such file or directory")
    return dataclasses.replace(suite, task=suite.task.with_param("corpus", str(path.resolve())))


def warn_caveats(cases: list) -> None:
    """Once per variant label that its own class expects to train badly (`training_caveat`)."""
    from attnbench.registry import REGISTRY

    seen = set()
    for case in cases:
        if case.label not in seen:
            seen.add(case.label)
            caveat = REGISTRY.get(case.variant).training_caveat(case.param_dict)
            if caveat:
                warn(f"{case.label}: {caveat}")


def with_seeds(suite, count: int):
    """The suite with every point of its task trained with seeds 0 … count−1."""
    if suite.task is None:
        raise UserError(f"--seeds: suite {suite.name!r} has no [task]: a benchmark is not seeded training")
    if count < 1:
        raise UserError(f"--seeds {count}: give the number of seeds, at least 1")
    return dataclasses.replace(suite, task=suite.task.with_seeds(range(count)))


def shard(cases: list, spec: str) -> list:
    """Every N-th case from the I-th, for `--shard I/N`."""
    index, sep, count = spec.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UserError(f"--shard {spec!r}: expected I/N with 0 ≤ I < N, e.g. 0/4")
    if int(index) >= len(cases):
        raise UserError(f"--shard {spec}: shard {index} is empty, the sweep has only {len(cases)} cases")
    return cases[int(index) :: int(count)]

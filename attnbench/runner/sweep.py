"""A sweep: cases through an executor into the results store, with a progress bar. Cases go
one at a time through `run`, or, for an executor that runs many at once (`run_many`), as fast
as it takes them; either way each result is appended as it arrives, in the order they finish."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.measure.noise import busy_warning
from attnbench.outcome import Outcome
from attnbench.results.lock import check_writable, hold_results
from attnbench.results.store import ResultStore, make_record
from attnbench.runner.executors import Executor, make_executor
from attnbench.runner.rounds import Rounds, repeats
from attnbench.suites import Suite

RESULTS_DIR = Path("results")
TIME_FORMAT, TIME_GLOB = "%Y%m%d-%H%M%S", "[0-9]" * 8 + "-" + "[0-9]" * 6
LARGE_SWEEP = 10_000  # cases; past this many to run, the run says how long that is
PROGRESS_COLUMNS = (
    TextColumn("{task.description}", style="cyan"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    TextColumn("eta"),
    TimeRemainingColumn(),
)


@dataclass
class SweepOutcome:
    path: Path
    total: int
    already_done: int
    statuses: Counter = field(default_factory=Counter)
    left: int = 0  # not run because the time budget ran out
    repeat: int = 1  # rounds: `total` counts (case, round) pairs
    worker_starts: int = 0
    wall_s: float = 0.0


def default_results_path(suite: str, *, resume: bool, shard: str | None = None) -> Path:
    """results/<suite>-<time>.jsonl, or <suite>-<time>-shard<I>of<N>.jsonl for `--shard I/N`
    (shards started together must not share a file: each run holds its own); with --resume,
    the newest such file if there is one (of this suite only: `speed-*` would also match suite
    `speed-gpu`'s files)."""
    part = "-shard{}of{}".format(*shard.split("/")) if shard else ""
    if resume:
        existing = RESULTS_DIR.glob(f"{suite}-{TIME_GLOB}{part}.jsonl")
        newest = sorted(existing, key=lambda p: p.stat().st_mtime)
        if newest:
            return newest[-1]
    return RESULTS_DIR / f"{suite}-{time.strftime(TIME_FORMAT)}{part}.jsonl"


def default_mem_limit(cases: list[Case]) -> int | None:
    """80% of physical memory for CPU-only sweeps; none where CUDA is involved."""
    if any(c.device == "cuda" for c in cases):
        return None
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def worker_log_path(out: Path) -> Path:
    """Where workers write what they print: beside the results, never the results file itself."""
    log = out.with_suffix(".log")
    return log if log != out else out.with_name(out.name + ".worker.log")


def finished_records(store: ResultStore, suite: str, *, resume: bool) -> list[dict]:
    """The records already in the results file, which this run will not run again. Never
    append a fresh sweep to old results, nor resume another suite's file: either would mix
    two runs."""
    if not resume:
        if store.path.stat().st_size > 0:
            raise UserError(
                f"{store.path} already holds results: add --resume to continue it, or -o a new path"
            )
        return []
    records = store.records()
    others = sorted({str(r.get("suite")) for r in records if r.get("suite") not in (None, suite)})
    if others:
        raise UserError(
            f"--resume: {store.path} holds results of suite {others[0]!r}, not {suite!r}: "
            f"resume it with --suite {others[0]}, or -o a new file"
        )
    return records


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def announce(console: Console, suite: Suite, outcome: SweepOutcome, executor: str) -> None:
    """The run's first line: how many cases (and rounds), how many already done, where they go."""
    todo = outcome.total - outcome.already_done
    unit = " replicates" if outcome.repeat > 1 else ""
    resumed = (
        f" ({outcome.already_done:,}{unit} already done, {todo:,} to run)" if outcome.already_done else ""
    )
    cases = plural(outcome.total // outcome.repeat, "case")
    rounds = f" × {outcome.repeat} rounds" if outcome.repeat > 1 else ""
    console.print(
        f"[bold]{escape(suite.name)}[/]: {cases}{rounds}{resumed} → "
        f"{escape(str(outcome.path))}  (executor {executor})",
        soft_wrap=True,
    )
    if suite.settings.repeat > outcome.repeat:
        console.print(
            f"[dim]repeat {suite.settings.repeat}: {suite.name} is not timed, its cases run once[/]"
        )
    if todo > LARGE_SWEEP:
        console.print(
            f"[yellow]warning:[/] {todo:,} cases to run is a long sweep (hours, at a second a case): "
            "narrow it with --only or --shard, or set budget_s in [suite] and continue with --resume",
            soft_wrap=True,
        )


def warn_if_busy(console: Console, suite: Suite) -> None:
    """One line when other processes keep the machine busy before a timed sweep."""
    if suite.task is None and "time" in suite.settings.metrics:
        message = busy_warning()
        if message:
            console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def round_label(case: Case, round_: int, repeat: int) -> str:
    """The progress bar's description: the case, and its round when there are replicates."""
    return f"{case} (round {round_ + 1}/{repeat})" if repeat > 1 else str(case)


def run_sweep(
    suite: Suite,
    cases: list[Case],
    *,
    out: Path,
    resume: bool = False,
    executor: str = "subprocess",
    mem_limit: int | None = None,
    console: Console | None = None,
    executor_options: dict | None = None,
) -> SweepOutcome:
    """Run `cases` into `out`, held against other runs for the whole sweep; every path is
    checked before the first case. `executor_options`: the executor's own (`address`, …)."""
    console = console or Console(stderr=True)
    with hold_results(out):
        log_path = worker_log_path(out)
        check_writable(log_path, "worker log")
        store = ResultStore(out)
        plan = Rounds(cases, repeats(suite))
        plan.note_records(finished_records(store, suite.name, resume=resume))
        todo = plan.todo()
        total = len(cases) * plan.repeat
        outcome = SweepOutcome(path=out, total=total, already_done=total - len(todo), repeat=plan.repeat)
        runner = make_executor(  # first: an executor that cannot start (no cluster) says so alone
            executor,
            suite.settings,
            timeout_s=suite.timeout_s,
            mem_limit=mem_limit,
            log_path=log_path,
            **(executor_options or {}),
        )
        announce(console, suite, outcome, executor)
        warn_if_busy(console, suite)
        start = time.perf_counter()

        taken = 0  # (case, round) pairs taken from `todo`, skipped ones too

        def within_budget(pairs: list[tuple[int, Case]]) -> Iterator[Case]:
            """The round's cases to run, until the time budget is spent (checked as each is
            taken); a case that failed in an earlier round is passed over."""
            nonlocal taken
            for round_, case in pairs:
                if suite.budget_s is not None and time.perf_counter() - start > suite.budget_s:
                    outcome.left = len(todo) - taken
                    return
                taken += 1
                if plan.skip(case, round_):
                    progress.advance(task)
                    continue
                yield case

        try:
            with Progress(*PROGRESS_COLUMNS, console=console, transient=False) as progress:
                task = progress.add_task(suite.name, total=len(todo))
                # round by round: a case is once in a round, so each outcome names its pair
                # even where the executor finishes cases out of order (run_many)
                for round_, pairs in itertools.groupby(todo, key=lambda pair: pair[0]):
                    show = lambda case, r=round_: progress.update(
                        task, description=round_label(case, r, plan.repeat)
                    )
                    for case, result in outcomes(runner, within_budget(list(pairs)), show):
                        replicate = round_ if plan.repeat > 1 else None
                        store.append(make_record(case, result, suite.name, round_=replicate))
                        plan.note(case.id, round_, result.status)
                        outcome.statuses[result.status] += 1
                        progress.advance(task)
                    if outcome.left:
                        break
                progress.update(task, description=suite.name)
        finally:
            runner.close()
            outcome.worker_starts = getattr(runner, "starts", 0)
            outcome.wall_s = time.perf_counter() - start
    return outcome


def outcomes(
    runner: Executor, cases: Iterable[Case], show: Callable[[Case], None]
) -> Iterator[tuple[Case, Outcome]]:
    """Each case with its outcome, as it finishes: through `run_many` where the executor has
    one (the progress bar then names the case that finished last), else one `run` at a time
    (naming the case that runs)."""
    if hasattr(runner, "run_many"):
        for case, result in runner.run_many(cases):
            show(case)
            yield case, result
        return
    for case in cases:
        show(case)
        yield case, runner.run(case)

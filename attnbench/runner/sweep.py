"""A sweep: cases through an executor into the results store, with a progress bar."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
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
from attnbench.results.store import ResultStore, make_record
from attnbench.runner.executors import make_executor
from attnbench.suites import Suite

RESULTS_DIR = Path("results")


@dataclass
class SweepOutcome:
    path: Path
    total: int
    already_done: int
    statuses: Counter = field(default_factory=Counter)
    left: int = 0  # not run because the time budget ran out
    worker_starts: int = 0
    wall_s: float = 0.0


def default_results_path(suite: str, *, resume: bool) -> Path:
    """results/<suite>-<time>.jsonl; with --resume, the newest such file if there is one."""
    if resume:
        existing = sorted(RESULTS_DIR.glob(f"{suite}-*.jsonl"), key=lambda p: p.stat().st_mtime)
        if existing:
            return existing[-1]
    return RESULTS_DIR / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"


def default_mem_limit(cases: list[Case]) -> int | None:
    """80% of physical memory for CPU-only sweeps; none where CUDA is involved."""
    if any(c.device == "cuda" for c in cases):
        return None
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_output(out: Path, *, resume: bool) -> None:
    """Never append a fresh sweep to old results: that would mix two runs in one file."""
    if not resume and out.exists() and out.stat().st_size > 0:
        raise UserError(f"{out} already holds results: add --resume to continue it, or -o a new path")


def run_sweep(
    suite: Suite,
    cases: list[Case],
    *,
    out: Path,
    resume: bool = False,
    executor: str = "subprocess",
    mem_limit: int | None = None,
    console: Console | None = None,
) -> SweepOutcome:
    console = console or Console(stderr=True)
    store = ResultStore(out)
    check_output(out, resume=resume)
    done = store.done_ids() if resume else set()
    todo = [c for c in cases if c.id not in done]
    outcome = SweepOutcome(path=out, total=len(cases), already_done=len(cases) - len(todo))
    log_path = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    runner = make_executor(
        executor, suite.settings, timeout_s=suite.timeout_s, mem_limit=mem_limit, log_path=log_path
    )
    start = time.perf_counter()
    columns = (
        TextColumn("{task.description}", style="cyan"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(suite.name, total=len(todo))
            for i, case in enumerate(todo):
                if suite.budget_s is not None and time.perf_counter() - start > suite.budget_s:
                    outcome.left = len(todo) - i
                    break
                progress.update(task, description=str(case))
                result = runner.run(case)
                store.append(make_record(case, result, suite.name))
                outcome.statuses[result.status] += 1
                progress.advance(task)
            progress.update(task, description=suite.name)
    finally:
        runner.close()
        outcome.worker_starts = getattr(runner, "starts", 0)
        outcome.wall_s = time.perf_counter() - start
    return outcome

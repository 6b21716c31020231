"""Same-job A/B: a base revision and this checkout run the same cases, interleaved.

The base revision is checked out into a temporary git worktree; nothing is installed: its
worker process imports the worktree's `attnbench` package in place of this one (same Python,
same torch). Each case runs on both sides back to back (which side first is drawn per case,
so neither is always second), so drift of the machine over the job (thermal state,
neighbours, frequency) lands on both sides alike. With replicates (`repeat` R) the job runs R
rounds, every case once per round on each side, the order of the cases shuffled per round
(attnbench/runner/rounds.py): the gate then judges each case on R replicates a side. Each
side's records go to its own results file, and the regression gate compares them.
"""

from __future__ import annotations

import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from attnbench.cases import Case
from attnbench.env import SOURCE_DIR
from attnbench.errors import UserError
from attnbench.results.store import ResultStore, make_record
from attnbench.runner.executors import SubprocessExecutor
from attnbench.runner.rounds import SEED, Rounds
from attnbench.suites import Suite


@dataclass(frozen=True)
class ABOutcome:
    base: Path
    head: Path
    revision: str


def _git(*args: str, cwd: Path = SOURCE_DIR) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise UserError("--base needs git on the PATH") from None
    except subprocess.CalledProcessError as e:
        raise UserError(f"git {' '.join(args)}: {(e.stderr or e.stdout).strip().splitlines()[-1]}") from None
    return done.stdout.strip()


def run_ab(
    suite: Suite, cases: list[Case], base: str, out_dir: Path, console: Console, *, repeat: int = 1
) -> ABOutcome:
    """Run `cases` on revision `base` (a worktree) and on this checkout, interleaved, in
    `repeat` rounds."""
    revision = _git("rev-parse", "--verify", f"{base}^{{commit}}")
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = {side: ResultStore(out_dir / f"{side}.jsonl") for side in ("base", "head")}
    for store in stores.values():
        store.path.unlink(missing_ok=True)
    plan = Rounds(cases, repeat)
    first = random.Random(f"{SEED}-ab")  # which side runs a case first
    with tempfile.TemporaryDirectory(prefix="attnbench-base-") as tmp:
        tree = Path(tmp) / "tree"
        _git("worktree", "add", "--detach", str(tree), revision)
        executors = {
            side: SubprocessExecutor(
                suite.settings,
                timeout_s=suite.timeout_s,
                log_path=out_dir / f"{side}.log",
                source=tree if side == "base" else SOURCE_DIR,
            )
            for side in ("base", "head")
        }
        start = time.perf_counter()
        try:
            todo = plan.todo()
            for i, (round_, case) in enumerate(todo, 1):
                if not plan.skip(case, round_):
                    sides = ["base", "head"]
                    first.shuffle(sides)
                    statuses = set()
                    for side in sides:
                        outcome = executors[side].run(case)
                        replicate = round_ if repeat > 1 else None
                        stores[side].append(make_record(case, outcome, suite.name, round_=replicate))
                        statuses.add(outcome.status)
                    plan.note(case.id, round_, "ok" if statuses == {"ok"} else "failed")
                if repeat == 1:
                    console.print(f"[dim]{i}/{len(cases)} {case}[/]", highlight=False)
                elif i == len(todo) or todo[i][0] != round_:
                    elapsed = time.perf_counter() - start
                    console.print(
                        f"[dim]round {round_ + 1}/{repeat} done · {elapsed:.0f} s[/]", highlight=False
                    )
        finally:
            for executor in executors.values():
                executor.close()
            _git("worktree", "remove", "--force", str(tree))
    return ABOutcome(stores["base"].path, stores["head"].path, revision)

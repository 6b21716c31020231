"""Replicates: a timed case measured R times, in R rounds, each round every case once, in an
order shuffled per round (seeded by the round, so a resumed run keeps it). Drift of the
machine over a sweep — a neighbour's job, the heap of a long-lived worker, the temperature —
lands on every case alike instead of on whichever ran during it, and each replicate keeps its
own median and spread. Google Benchmark's repetitions and pyperf's worker processes do the
same in time; shuffling is what makes a slow minute hit all cases.

The store stays append-only: each replicate is one record with its `round`, and
`load_results` reads the rounds of a case back as one row (attnbench/results/replicates.py).
`--resume` skips the (case, round) pairs already written. A case that did not end `ok` in an
earlier round (unsupported, oom, timeout, …) is not run again: more replicates of a failure
would only cost its timeout again. Cases that are not timed (a task's training, a suite
measuring memory or error only) run once: they do not vary from run to run.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.suites import SUITE_KEYS, Suite

SEED = "attnbench-round"


def repeats(suite: Suite) -> int:
    """Replicates per case: the suite's `repeat` for timed suites, else 1."""
    timed = suite.task is None and "time" in suite.settings.metrics
    return suite.settings.repeat if timed else 1


def with_repeat(suite: Suite, repeat: int | None) -> Suite:
    """The suite with `--repeat R` in place of its `repeat` key (None: as it is)."""
    if repeat is None:
        return suite
    problem = SUITE_KEYS["repeat"].problem(repeat)
    if problem:
        raise UserError(f"--repeat {repeat}: {problem}")
    return dataclasses.replace(suite, settings=dataclasses.replace(suite.settings, repeat=repeat))


def order(cases: list[Case], round_: int, repeat: int) -> list[Case]:
    """The cases of one round: the suite's order without replicates, else shuffled by a
    generator seeded with the round."""
    if repeat <= 1:
        return list(cases)
    shuffled = list(cases)
    random.Random(f"{SEED}-{round_}").shuffle(shuffled)
    return shuffled


def record_round(record: dict[str, Any]) -> int:
    """The round a record belongs to (0 for records written without replicates)."""
    return int(record.get("round") or 0)


@dataclass
class Rounds:
    """Which (case, round) pairs a run still has to do, given what is already written."""

    cases: list[Case]
    repeat: int
    done: set[tuple[str, int]] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # cases that did not end ok in some round

    def note(self, case_id: str, round_: int, status: str) -> None:
        self.done.add((case_id, round_))
        if status != "ok":
            self.failed.add(case_id)

    def note_records(self, records: Iterable[dict[str, Any]]) -> None:
        for r in records:
            self.note(r["case_id"], record_round(r), r["status"])

    def todo(self) -> list[tuple[int, Case]]:
        """The pairs not written yet, in running order (a failed case's later rounds included:
        `skip` tells them apart as the run reaches them)."""
        return [
            (r, c)
            for r in range(self.repeat)
            for c in order(self.cases, r, self.repeat)
            if (c.id, r) not in self.done
        ]

    def skip(self, case: Case, round_: int) -> bool:
        """Whether to leave out this pair: a later round of a case that already failed."""
        return round_ > 0 and case.id in self.failed

"""Append-only JSON-lines results. Each record is written and flushed as its case finishes,
so a killed sweep loses at most the case in flight and `--resume` skips what is done."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnbench import signals
from attnbench.cases import Case
from attnbench.errors import UserError
from attnbench.outcome import Outcome
from attnbench.results.schema import STATUSES, record_problem

__all__ = ["STATUSES", "ResultStore", "make_record", "read_records"]

SCHEMA = 1


def make_record(case: Case, outcome: Outcome, suite: str, *, round_: int | None = None) -> dict[str, Any]:
    """One result: the case, its status, metrics and flags, and the environment it ran in;
    with replicates, one per round (`round_`, from 0), read back as one row per case."""
    record = {
        "schema": SCHEMA,
        "suite": suite,
        "case_id": case.id,
        "label": case.label,
        "case": case.to_dict(),
        "status": outcome.status,
        "error": outcome.error,
        "metrics": outcome.metrics,
        "flags": outcome.flags,
        "env": outcome.env,
        "wall_s": outcome.wall_s,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if round_ is not None:
        record["round"] = round_
    return record


class ResultStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Write `record` as one line, whole: a Ctrl-C or SIGTERM arriving meanwhile acts
        right after it (a record half written would be lost to the run and to --resume). A
        write that fails (a full disk) stops the run with a UserError; what is written stays."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with signals.deferred(), open(self.path, "a+b") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a line cut short by a kill: keep it apart from ours
                        f.write(b"\n")
                f.write(json.dumps(record, sort_keys=True, default=str).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise UserError(f"cannot write results to {self.path}: {e.strerror or e}") from None

    def records(self) -> list[dict[str, Any]]:
        """The file's results (none if it does not exist yet); unreadable lines skipped."""
        if not self.path.exists():
            return []
        return read_records(self.path, warn=lambda msg: None)

    def done_ids(self) -> set[str]:
        return {r["case_id"] for r in self.records()}


def read_records(path: str | Path, *, warn: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every readable record; a line that is not a result (cut short, edited, binary) is
    skipped with a warning naming its line. A missing or unreadable file is a UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read results file {path}: {e.strerror or e}") from None
    records = []
    for lineno, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            warn(f"{path}:{lineno}: skipped a line that is not JSON")
            continue
        problem = record_problem(rec)
        if problem:
            warn(f"{path}:{lineno}: skipped a line that is not an attnbench result: {problem}")
            continue
        records.append(rec)
    return records

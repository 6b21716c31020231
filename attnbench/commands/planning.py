"""What `attnbench run` says before it runs: the variants a family or glob selected that cannot
run here (skipped unless --all), the plan of --dry-run, and a warning before a long run."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from attnbench.commands.common import console, err, warn
from attnbench.errors import UserError


def named(only: str | None) -> set[str]:
    """The exact variant names in an --only pattern list."""
    return {p.strip() for p in (only or "").split(",") if p.strip()}


def available_cases(cases: list, names: set[str]) -> list:
    """`cases` less those of variants a family or glob selected that cannot run on their
    device here, listed once each with the reason."""
    from attnbench.runner.plan import skip_unavailable

    kept, skipped = skip_unavailable(cases, names)
    if skipped:
        listed = "; ".join(f"{v}: {why}" for v, why in sorted(skipped.items()))
        err.print(
            f"[dim]skipped, cannot run here (--all records them as unsupported): {escape(listed)}[/]",
            soft_wrap=True,
        )
    if not kept:
        names = ", ".join(sorted(skipped))
        raise UserError(
            f"none of the selected variants can run here ({names}); --all records them as unsupported"
        )
    return kept


def still_to_run(suite, cases: list, out: Path) -> list:
    """With --resume: the cases of which `out` lacks a round (the others are not run again, so
    they do not count in an estimate). An unreadable file is left for the run to report."""
    from attnbench.results.store import read_records
    from attnbench.runner.rounds import Rounds, repeats

    if not out.is_file():
        return cases
    try:
        records = read_records(out, warn=lambda _: None)
    except UserError:
        return cases
    plan = Rounds(cases, repeats(suite))
    plan.note_records(r for r in records if "case_id" in r and "status" in r)
    todo = {c.id for _, c in plan.todo()}
    return [c for c in cases if c.id in todo]


def planned(suite, cases: list, out: Path, *, calibrate: bool):
    """The plan of `cases`, with earlier results of this suite on this host as estimates."""
    import socket

    from attnbench.runner.plan import earlier_seconds, make_plan

    files = sorted(Path("results").glob(f"{suite.name}-*.jsonl")) + ([out] if out.exists() else [])
    earlier = earlier_seconds(files, socket.gethostname())
    return make_plan(cases, suite.settings, earlier=earlier, calibrate=calibrate)


def print_plan(suite, cases: list, out: Path, *, calibrate: bool, done: int = 0) -> None:
    """--dry-run: cases by variant, what cannot run and why, the estimated time (`done`: cases
    --resume will not run again, already left out of `cases`)."""
    import pandas as pd

    from attnbench.report.terminal import print_frame
    from attnbench.runner.plan import duration, plan_rows

    plan = planned(suite, cases, out, calibrate=calibrate)
    table = pd.DataFrame(plan_rows(plan, cases))
    numbers = ("runs", "estimate", "unsupported")
    print_frame(console, table, f"{suite.name}: the cases of this run", right=lambda c: c in numbers)
    missing = plan.unestimated()
    console.print(
        (f"{done} cases already done (--resume); " if done else "")
        + f"{len(cases)} cases: {len(plan.runnable)} run here, {len(plan.unsupported)} unsupported · "
        f"estimated {duration(plan.estimate_s)} ({plan.from_earlier} from earlier results, "
        f"{len(plan.seconds) - plan.from_earlier} from FLOPs and this machine's calibration"
        + (f", {len(missing)} with no estimate" if missing else "")
        + f"){'' if suite.budget_s is None else f' · budget {duration(suite.budget_s)}'}",
        soft_wrap=True,
    )


def warn_if_long(suite, cases: list, out: Path) -> None:
    """One line before a run whose estimate passes LONG_RUN_S (and its budget, if any)."""
    from attnbench.runner.plan import LONG_RUN_S, duration

    plan = planned(suite, cases, out, calibrate=suite.settings.calibrate)
    limit = LONG_RUN_S if suite.budget_s is None else max(LONG_RUN_S, suite.budget_s)
    if plan.estimate_s > limit:
        warn(
            f"this run is estimated at {duration(plan.estimate_s)} ({len(plan.runnable)} cases run here): "
            "--dry-run shows where the time goes; --budget S stops it after S seconds (then --resume)"
        )

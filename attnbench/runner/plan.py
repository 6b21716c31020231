"""What a run will do, before it does it: which cases run here and which cannot (and why), and
how long the sweep should take.

A case's time is taken from an earlier result of the same case on this host when there is
one (its `wall_s`), otherwise from its FLOP formula and this machine's calibrated ceilings
(`measure.calibrate`): one call costs max(FLOPs / (matmul peak · EFFICIENCY), bytes / copy
bandwidth), and a case makes `1 + warmup` calls, then max(min_run_time, min_samples calls) of
timing, one more for memory and one for the error, plus a fixed start-up. EFFICIENCY and
START_S are fitted on the CI suite (`python benchmarks/estimate_accuracy.py`); the estimate is a
guide to within a factor of a few, not a measurement. Task cases (training) have no FLOP
formula: only earlier results estimate them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from attnbench.cases import Case
from attnbench.errors import Unsupported, UserError
from attnbench.measure.settings import MeasureSettings
from attnbench.registry import REGISTRY

EFFICIENCY = 0.3  # share of the matmul peak an attention call reaches (CI suite, CPU)
START_S = 0.35  # per case: building the variant and its inputs, the worker round trip
COMPILE_S = 5.0  # per case of a compiled variant: torch.compile traces each new shape (CPU)
LONG_RUN_S = 600.0  # past this estimate `run` says so before it starts


@dataclass
class Plan:
    runnable: list[Case] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # case id -> why it cannot run
    seconds: dict[str, float] = field(default_factory=dict)  # case id -> estimated wall time
    from_earlier: int = 0  # estimates taken from earlier results

    @property
    def estimate_s(self) -> float:
        return sum(self.seconds.values())

    def unestimated(self) -> list[Case]:
        return [c for c in self.runnable if c.id not in self.seconds]


def skip_unavailable(cases: list[Case], named: set[str]) -> tuple[list[Case], dict[str, str]]:
    """The cases whose variant is available on their device, or named exactly (`named`);
    and, for the rest, variant -> why it cannot run here (selected by family or glob only)."""
    kept, skipped = [], {}
    for case in cases:
        available = REGISTRY.get(case.variant).available(case.device)
        if available or case.variant in named:
            kept.append(case)
        else:
            skipped.setdefault(case.variant, f"{available.reason} ({case.device})")
    return kept, skipped


def why_unsupported(case: Case) -> str | None:
    """Why `case` would be recorded `unsupported` (without running it), or None."""
    cls = REGISTRY.get(case.variant)
    available = cls.available(case.device)
    if not available:
        return available.reason
    if case.task:
        return None  # the task decides when it runs
    try:
        cls(heads=case.heads, d_head=case.d_head, **case.param_dict).check(case)
    except Unsupported as e:
        return str(e)
    except (UserError, NotImplementedError, ValueError) as e:
        return str(e)
    return None


def case_seconds(case: Case, settings: MeasureSettings, ceilings) -> float | None:
    """The estimated wall time of one benchmark case from its FLOPs; None without a formula or
    a calibration."""
    if case.task or ceilings is None:
        return None
    from attnbench.inputs import torch_dtype

    cls = REGISTRY.get(case.variant)
    flops = cls.flops(case.shape, causal=case.causal, mode=case.mode, params=case.param_dict)
    peak = ceilings.matmul_flops.get(case.dtype)
    if not flops or not peak:
        return None
    itemsize = torch_dtype(case.dtype).itemsize
    moved = cls.min_bytes(case.shape, mode=case.mode, itemsize=itemsize)
    call = max(flops / (peak * EFFICIENCY), moved / (ceilings.copy_bytes_per_s or float("inf")))
    timed = max(settings.min_run_time, settings.min_samples * call) if "time" in settings.metrics else 0.0
    extra = ("memory" in settings.metrics) + ("error" in settings.metrics)
    compiling = COMPILE_S if cls.compiled else 0.0
    return START_S + compiling + (1 + settings.warmup + extra) * call + timed


def earlier_seconds(paths: Iterable[Path], host: str) -> dict[str, float]:
    """case id -> wall time of its latest `ok` result on this host in `paths` (files that
    cannot be read are passed over: they only inform an estimate; so are paths that are not
    regular files, such as `-o /dev/full`, which the run itself refuses)."""
    from attnbench.results.store import read_records

    seconds: dict[str, float] = {}
    for path in paths:
        if not Path(path).is_file():
            continue
        try:
            records = read_records(path, warn=lambda _msg: None)
        except (UserError, OSError):
            continue
        for rec in records:
            wall = rec.get("wall_s")
            if rec["status"] == "ok" and wall and (rec.get("env") or {}).get("hostname") == host:
                seconds[rec["case_id"]] = float(wall)
    return seconds


def make_plan(
    cases: list[Case],
    settings: MeasureSettings,
    *,
    earlier: dict[str, float],
    calibrate: bool,
) -> Plan:
    """Each case's fate here and its estimated time; `calibrate` measures the ceilings that
    are not cached yet (seconds), otherwise FLOP estimates use only cached ones."""
    from attnbench.measure.calibrate import ceilings

    plan = Plan()
    machines: dict[tuple, object] = {}
    for case in cases:
        reason = why_unsupported(case)
        if reason:
            plan.unsupported[case.id] = reason
            continue
        plan.runnable.append(case)
        if case.id in earlier:
            plan.seconds[case.id] = earlier[case.id]
            plan.from_earlier += 1
            continue
        key = (case.device, case.threads, case.dtype)
        if key not in machines:
            machines[key] = ceilings(case.device, case.threads, (case.dtype,), measure=calibrate)
        seconds = case_seconds(case, settings, machines[key])
        if seconds is not None:
            plan.seconds[case.id] = seconds
    return plan


def duration(seconds: float) -> str:
    """`4 min 10 s`, `2 h 5 min`, `12 s`."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def plan_rows(plan: Plan, cases: list[Case]) -> list[dict[str, object]]:
    """One row per variant label: cases that run here and their estimated time, cases that
    will be recorded unsupported and the first reason."""
    runs: dict[str, int] = {}
    skipped: dict[str, int] = {}
    seconds: dict[str, float] = {}
    why: dict[str, str] = {}
    for case in cases:
        label = case.label
        runs.setdefault(label, 0)
        skipped.setdefault(label, 0)
        if case.id in plan.unsupported:
            skipped[label] += 1
            why.setdefault(label, plan.unsupported[case.id])
        else:
            runs[label] += 1
            seconds[label] = seconds.get(label, 0.0) + plan.seconds.get(case.id, 0.0)
    return [
        {
            "variant": label,
            "runs": runs[label],
            "estimate": duration(seconds[label]) if runs[label] else "",
            "unsupported": skipped[label],
            "why unsupported": why.get(label, ""),
        }
        for label in sorted(runs)
    ]

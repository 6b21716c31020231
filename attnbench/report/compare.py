"""The regression gate: what changed between a baseline and a current run, case by case.

Cases are joined by id (the hash of the case, so the same suite on another commit or machine
joins). Three kinds of change count as regressions:

- **speed**, as the ratio of a case's latency to the reference variant's in the same run at
  the same shape (so a uniformly slower machine is no regression). With replicates on both
  sides (`run --repeat R`, `compare --base REV --repeat R`), each replicate's ratio pairs the
  case and the reference of one round, and a case regressed when a one-sided Mann–Whitney U
  test finds the current ratios larger than the baseline's by more than `min_effect` (the
  baseline's shifted up by it), at the job's level `alpha` after correcting for the number
  of cases tested (Benjamini–Hochberg, or Holm): a job in which nothing changed raises an
  alarm with a chance of at most `alpha`, however many cases it holds. Improvements are the
  same test the other way. A single run a side cannot be judged so (run-to-run noise on a
  shared machine is larger than the spread inside a run): such cases fall back to the fixed
  band — worse by more than `threshold` *and* by more than `noise` times the combined spread
  of the four medians (half their interquartile ranges, relative, added in quadrature) — and
  the gate says so. Within one job (`compare --base`, both sides run case by case back to
  back) the replicates' own latencies can be compared instead (`speed = "latency"`): no
  reference measured at another moment of the round adds its noise, so the test is sharper;
  it is only meaningful when both files come from one job. Sharper still, `speed = "paired"`
  pairs each round's two sides (they ran back to back) and tests the per-round log ratios
  with a one-sided Wilcoxon signed-rank test: drift between rounds, which the unpaired test
  counts as noise, cancels within a pair;
- **memory**: CPU peak bytes are exact, so any increase; GPU peak bytes, and those of
  compiled (inductor) kernels, whose buffers are the compiler's choice, beyond a tolerance;
- **status**: a case that was `ok` and now is not (`oom`, `error`, `crash`, `timeout`, …).

Improvements, new and missing cases are listed, never fatal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from attnbench import stats
from attnbench.cases import describe
from attnbench.errors import UserError, did_you_mean
from attnbench.results.frame import relative_spread
from attnbench.results.replicates import (
    REFERENCE,
    SHAPE,
    paired_latencies,
    reference_rows,
    round_latencies,
    round_ratios,
)

MIN_REPLICATES = 2  # ratios a side below which a case falls back to the fixed band
SPEED_BASES = ("ratio", "latency", "paired")


@dataclass(frozen=True)
class Rules:
    reference: str = REFERENCE  # speed is measured as the ratio to this variant
    # with replicates: a job with no change raises a speed alarm with this chance at most …
    alpha: float = 0.05
    min_effect: float = 0.05  # … and a slowdown smaller than this (5 %) is never one
    correction: str = "bh"  # across the cases of a job: bh (Benjamini–Hochberg) or holm
    # what the replicates compare: "ratio" (to the reference, round by round: across runs) or
    # "latency" (the replicates' own medians: both sides from one same-job A/B only), or
    # "paired" (those medians paired round by round, signed-rank test: same-job A/B only)
    speed: str = "ratio"
    # a single run a side: a speed ratio this much worse (25 %) ...
    threshold: float = 0.25
    noise: float = 3.0  # ... and this many combined spreads worse, is a regression
    gpu_memory_tolerance: float = 0.02  # also for compiled kernels on the CPU
    metrics: tuple[str, ...] = ("time", "memory", "status")


@dataclass(frozen=True)
class Change:
    case_id: str
    case: str  # label and shape, for people
    kind: str  # speed | memory | status | new | missing | no-reference
    base: str
    current: str
    change: float | None  # relative change (speed ratio, memory bytes), None for status/new/missing
    regression: bool
    interval: str = ""  # speed with replicates: the 95 % interval of the change
    p: float | None = None  # speed with replicates: the p-value, corrected across the job's cases


@dataclass(frozen=True)
class Comparison:
    changes: list[Change]  # regressions first
    notes: list[str]  # how time was judged, for people


@dataclass(frozen=True)
class SpeedSample:
    """One case's ratios to the reference, a replicate each, on both sides."""

    case_id: str
    case: str
    base: list[float]
    current: list[float]


def compare(base: pd.DataFrame, current: pd.DataFrame, rules: Rules = Rules()) -> Comparison:
    """Every notable change from `base` to `current` (regressions first), and how time was
    judged."""
    for name, df in (("baseline", base), ("current", current)):
        if df.empty or "case_id" not in df:
            raise UserError(f"the {name} results hold no cases")
    b, c = base.set_index("case_id"), current.set_index("case_id")
    if not set(b.index) & set(c.index):
        raise UserError(
            "the baseline and current results have no case in common (another suite, shapes or "
            "parameters): there is nothing to compare"
        )
    if rules.speed not in SPEED_BASES:
        raise UserError(f"speed {rules.speed!r}: choose from {', '.join(SPEED_BASES)}")
    if "time" in rules.metrics:
        _check_reference(rules.reference, base, current)
    changes: list[Change] = []
    for cid in sorted(set(c.index) - set(b.index)):
        changes.append(Change(cid, describe(c.loc[cid]), "new", "", c.loc[cid, "status"], None, False))
    for cid in sorted(set(b.index) - set(c.index)):
        changes.append(Change(cid, describe(b.loc[cid]), "missing", b.loc[cid, "status"], "", None, False))
    ref_b, ref_c = reference_rows(base, rules.reference), reference_rows(current, rules.reference)
    samples: list[SpeedSample] = []
    single_run = 0
    for cid in sorted(set(b.index) & set(c.index)):
        rb, rc = b.loc[cid], c.loc[cid]
        what = describe(rc)
        if "status" in rules.metrics and rb["status"] != rc["status"]:
            worse = rb["status"] == "ok"
            changes.append(Change(cid, what, "status", rb["status"], rc["status"], None, worse))
            continue
        if rb["status"] != "ok":
            continue
        if "memory" in rules.metrics:
            changes.extend(_memory(cid, what, rb, rc, rules))
        if "time" in rules.metrics and rules.speed != "ratio" and _has_latency(rb, rc):
            if rules.speed == "paired":
                lat_b, lat_c = paired_latencies(rb, rc)
            else:
                lat_b, lat_c = round_latencies(rb), round_latencies(rc)
            if min(len(lat_b), len(lat_c)) >= MIN_REPLICATES:
                samples.append(SpeedSample(cid, what, lat_b, lat_c))
                continue
        if "time" in rules.metrics and rc["variant"] != rules.reference and _has_latency(rb, rc):
            key = tuple(rc[k] for k in SHAPE)
            if key not in ref_b or key not in ref_c:
                missing = f"no ok {rules.reference} at this shape"
                changes.append(Change(cid, what, "no-reference", "", missing, None, False))
                continue
            ratios_b, ratios_c = round_ratios(rb, ref_b[key]), round_ratios(rc, ref_c[key])
            if min(len(ratios_b), len(ratios_c)) >= MIN_REPLICATES:
                samples.append(SpeedSample(cid, what, ratios_b, ratios_c))
            else:
                single_run += 1
                changes.extend(_band(cid, what, rb, rc, ref_b[key], ref_c[key], rules))
    changes.extend(judge(samples, rules))
    notes = time_notes(samples, single_run, rules) if "time" in rules.metrics else []
    return Comparison(sorted(changes, key=lambda ch: (not ch.regression, ch.kind, ch.case)), notes)


def _has_latency(rb: pd.Series, rc: pd.Series) -> bool:
    return not (pd.isna(rb.get("latency_ms")) or pd.isna(rc.get("latency_ms")))


def judge(samples: list[SpeedSample], rules: Rules) -> list[Change]:
    """The statistical rule over all the cases with replicates at once: a one-sided test each
    way (slower, faster) on the log ratios, shifted by `min_effect` — Mann–Whitney U between
    the two sides' samples, or (`paired`) Wilcoxon signed-rank on the per-round differences —
    its p-values corrected across the cases; a change whose corrected p is at most `alpha`."""
    if not samples:
        return []
    shift = math.log1p(rules.min_effect)
    logs = [(np.log(s.current), np.log(s.base)) for s in samples]
    if rules.speed == "paired":
        slower_raw = [stats.wilcoxon_greater(c - b, shift=shift) for c, b in logs]
        faster_raw = [stats.wilcoxon_greater(b - c, shift=shift) for c, b in logs]
    else:
        slower_raw = [stats.mann_whitney_greater(c, b, shift=shift) for c, b in logs]
        faster_raw = [stats.mann_whitney_greater(b, c, shift=shift) for c, b in logs]
    slower = stats.adjust(slower_raw, rules.correction)
    faster = stats.adjust(faster_raw, rules.correction)
    out = []
    for s, p_slower, p_faster in zip(samples, slower, faster, strict=True):
        p = min(p_slower, p_faster)
        if p > rules.alpha:
            continue
        if rules.speed == "paired":
            per_round = np.asarray(s.current) / np.asarray(s.base)
            rel = stats.median(per_round) - 1
            ci = stats.bootstrap_median_ci(per_round)
        else:
            rel = stats.median(s.current) / stats.median(s.base) - 1
            ci = stats.bootstrap_ratio_ci(s.current, s.base)
        interval = f"[{100 * (ci[0] - 1):+.1f}%, {100 * (ci[1] - 1):+.1f}%]" if ci else ""
        unit = "ms" if rules.speed == "latency" else "× ref"
        base, current = _sample_text(s.base, unit), _sample_text(s.current, unit)
        out.append(
            Change(s.case_id, s.case, "speed", base, current, rel, p_slower <= rules.alpha, interval, p)
        )
    return out


def _sample_text(values: list[float], unit: str) -> str:
    ci = stats.bootstrap_median_ci(values)
    where = f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""
    return f"{stats.median(values):.3g}{'' if unit.startswith('×') else ' '}{unit}{where}"


def _cases(n: int) -> str:
    return f"{n} case" if n == 1 else f"{n} cases"


def time_notes(samples: list[SpeedSample], single_run: int, rules: Rules) -> list[str]:
    """How the gate judged time: on replicates (and whether it could find anything with so
    few), or from single runs, which it cannot judge reliably."""
    notes = []
    if samples:
        n = min(min(len(s.base), len(s.current)) for s in samples)
        name = {"bh": "Benjamini–Hochberg", "holm": "Holm"}[rules.correction]
        test = {
            "ratio": f"Mann–Whitney U on the ratio to {rules.reference}",
            "latency": "Mann–Whitney U on the latency (one job)",
            "paired": "Wilcoxon signed-rank on the latency paired by round (one job)",
        }[rules.speed]
        notes.append(
            f"time: {_cases(len(samples))} judged on their replicates (≥ {n} a side): one-sided "
            f"{test}, slowdowns past {rules.min_effect:.0%}, "
            f"{name} across the cases at α = {rules.alpha:g}"
        )

        def floor_of(r: int) -> float:
            return stats.smallest_p_paired(r) if rules.speed == "paired" else stats.smallest_p(r, r)

        floor = floor_of(n)
        if floor > rules.alpha / len(samples):
            need = next(r for r in range(n, 1000) if floor_of(r) <= rules.alpha / len(samples))
            notes.append(
                f"time: with {n} replicates a side the smallest p-value is {floor:.2g}, above "
                f"α/{len(samples)} = {rules.alpha / len(samples):.2g}: a change in one case alone cannot "
                f"be found; use --repeat {need} or more"
            )
    if single_run:
        notes.append(
            f"time: {_cases(single_run)} with a single run on one side (or both): time cannot be judged "
            f"reliably from one run on a shared machine, so they fall back to the fixed band (worse by "
            f"{rules.threshold:.0%} and {rules.noise:g} spreads); for a statistical verdict run with "
            "--repeat 5 or more, or compare --base REV --repeat R"
        )
    return notes


def _check_reference(reference: str, base: pd.DataFrame, current: pd.DataFrame) -> None:
    """Speed is a ratio to the reference variant: one that neither run measured would turn the
    speed gate off without a word."""
    variants = set(base["variant"].dropna()) | set(current["variant"].dropna())
    if reference not in variants:
        raise UserError(
            f"--reference {reference!r}: no such variant in these results{did_you_mean(reference, variants)} "
            "(speed is the ratio to it; --metrics memory,status gates without speed)"
        )


def _memory(cid: str, what: str, rb: pd.Series, rc: pd.Series, rules: Rules) -> list[Change]:
    mb, mc = rb.get("peak_mem_bytes"), rc.get("peak_mem_bytes")
    if mb is None or mc is None or pd.isna(mb) or pd.isna(mc) or mb == mc:
        return []
    rel = (mc - mb) / mb if mb else math.inf
    # CPU tensor bytes are exact, except what a compiler (inductor) chooses to allocate
    compiled = "compiles" in rc and not pd.isna(rc["compiles"])
    exact = rc["device"] == "cpu" and not compiled
    worse = mc > mb if exact else rel > rules.gpu_memory_tolerance
    if not worse and not exact and abs(rel) <= rules.gpu_memory_tolerance:
        return []
    return [Change(cid, what, "memory", f"{int(mb):,} B", f"{int(mc):,} B", rel, worse)]


def _band(cid, what, rb, rc, ref_b, ref_c, rules: Rules) -> list[Change]:
    """The fixed band, for a case with a single run on a side: its ratio worse by more than
    `threshold` and by `noise` combined spreads."""
    ratio_b = rb["latency_ms"] / ref_b["latency_ms"]
    ratio_c = rc["latency_ms"] / ref_c["latency_ms"]
    rel = ratio_c / ratio_b - 1
    spread = math.sqrt(sum(relative_spread(r) ** 2 for r in (rb, rc, ref_b, ref_c)))
    band = max(rules.threshold, rules.noise * spread)
    if abs(rel) <= band:
        return []
    return [
        Change(cid, what, "speed", f"{ratio_b:.3g}× ref", f"{ratio_c:.3g}× ref", rel, rel > band, "1 run")
    ]

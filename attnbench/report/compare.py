"""The regression gate: what changed between a baseline and a current run, case by case.

Cases are joined by id (the hash of the case, so the same suite on another commit or machine
joins). Three kinds of change count as regressions:

- **speed**, as the ratio of a case's median latency to the reference variant's in the same
  run at the same shape (so a uniformly slower machine is no regression): worse by more than
  `threshold` *and* by more than `noise` times the combined spread of the four medians
  (half their interquartile ranges, relative, added in quadrature);
- **memory**: CPU peak bytes are exact, so any increase; GPU peak bytes, and those of
  compiled (inductor) kernels, whose buffers are the compiler's choice, beyond a tolerance;
- **status**: a case that was `ok` and now is not (`oom`, `error`, `crash`, `timeout`, …).

Improvements, new and missing cases are listed, never fatal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from attnbench.cases import describe
from attnbench.errors import UserError, did_you_mean
from attnbench.results.frame import relative_spread

SHAPE = ["batch", "heads", "seq_len", "d_head", "dtype", "device", "causal", "mode", "threads"]


@dataclass(frozen=True)
class Rules:
    reference: str = "softmax.sdpa"  # speed is measured as the ratio to this variant
    threshold: float = 0.25  # a speed ratio this much worse (25 %) ...
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


def _reference_latency(df: pd.DataFrame, reference: str) -> dict[tuple, pd.Series]:
    ref = df[(df["variant"] == reference) & (df["params"].fillna("") == "") & (df["status"] == "ok")]
    return {tuple(r[k] for k in SHAPE): r for _, r in ref.iterrows()}


def compare(base: pd.DataFrame, current: pd.DataFrame, rules: Rules = Rules()) -> list[Change]:
    """Every notable change from `base` to `current` (regressions first)."""
    for name, df in (("baseline", base), ("current", current)):
        if df.empty or "case_id" not in df:
            raise UserError(f"the {name} results hold no cases")
    b, c = base.set_index("case_id"), current.set_index("case_id")
    if not set(b.index) & set(c.index):
        raise UserError(
            "the baseline and current results have no case in common (another suite, shapes or "
            "parameters): there is nothing to compare"
        )
    if "time" in rules.metrics:
        _check_reference(rules.reference, base, current)
    changes: list[Change] = []
    for cid in sorted(set(c.index) - set(b.index)):
        changes.append(Change(cid, describe(c.loc[cid]), "new", "", c.loc[cid, "status"], None, False))
    for cid in sorted(set(b.index) - set(c.index)):
        changes.append(Change(cid, describe(b.loc[cid]), "missing", b.loc[cid, "status"], "", None, False))
    ref_b, ref_c = _reference_latency(base, rules.reference), _reference_latency(current, rules.reference)
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
        if "time" in rules.metrics and rc["variant"] != rules.reference:
            changes.extend(_speed(cid, what, rb, rc, ref_b, ref_c, rules))
    return sorted(changes, key=lambda ch: (not ch.regression, ch.kind, ch.case))


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


def _speed(cid, what, rb, rc, ref_b, ref_c, rules: Rules) -> list[Change]:
    if pd.isna(rb.get("latency_ms")) or pd.isna(rc.get("latency_ms")):
        return []
    key = tuple(rc[k] for k in SHAPE)
    if key not in ref_b or key not in ref_c:
        return [Change(cid, what, "no-reference", "", f"no ok {rules.reference} at this shape", None, False)]
    ratio_b = rb["latency_ms"] / ref_b[key]["latency_ms"]
    ratio_c = rc["latency_ms"] / ref_c[key]["latency_ms"]
    rel = ratio_c / ratio_b - 1
    spread = math.sqrt(sum(relative_spread(r) ** 2 for r in (rb, rc, ref_b[key], ref_c[key])))
    band = max(rules.threshold, rules.noise * spread)
    if abs(rel) <= band:
        return []
    return [Change(cid, what, "speed", f"{ratio_b:.3g}× ref", f"{ratio_c:.3g}× ref", rel, rel > band)]

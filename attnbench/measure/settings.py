"""How a case is measured: which metric groups, how long to time, how to guard compiles.
Chosen per suite; not part of a case's identity."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

METRIC_GROUPS = ("time", "memory", "error")


@dataclass(frozen=True)
class MeasureSettings:
    """How a case is measured (not part of its identity)."""

    metrics: tuple[str, ...] = METRIC_GROUPS
    min_run_time: float = 0.5  # seconds of timed calls per case (CPU); rep time on GPU
    min_samples: int = 7  # timed samples at least, however slow the call (CPU)
    warmup: int = 2  # calls after the first (compiling) one, before timing
    error_rows: int = 128  # query rows sampled for the error against the oracle
    recompile_limit: int = 64  # torch.compile cache per function, sized for a sweep
    calibrate: bool = True  # report % of this machine's measured ceilings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureSettings:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "metrics" in kw:
            kw["metrics"] = tuple(kw["metrics"])
        return cls(**kw)

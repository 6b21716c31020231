"""How a case is measured: which metric groups, how long to time, how to guard compiles.
Chosen per suite; not part of a case's identity."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field, fields
from typing import Any

METRIC_GROUPS = ("time", "memory", "error")


def _setting(
    default: Any, key: str | None = None, *, minimum: float | None = None, maximum: float | None = None
) -> Any:
    """A setting, the [suite] key that sets it (its own name unless given) and the least and
    most a suite may give it."""
    return field(default=default, metadata={"suite_key": key, "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class MeasureSettings:
    """How a case is measured (not part of its identity). Each field is a [suite] key."""

    metrics: tuple[str, ...] = _setting(METRIC_GROUPS)
    # seconds of timed calls (CPU); rep time on GPU
    min_run_time: float = _setting(0.5, "min_run_time_s", minimum=0)
    min_samples: int = _setting(7, minimum=1)  # timed samples at least, however slow the call (CPU)
    warmup: int = _setting(2, minimum=0)  # calls after the first (compiling) one, before timing
    error_rows: int = _setting(128, minimum=1)  # query rows sampled for the error against the oracle
    recompile_limit: int = _setting(64, minimum=1)  # torch.compile cache per function, sized for a sweep
    calibrate: bool = _setting(True)  # report % of this machine's measured ceilings
    # also profile the cases of these variants (true: every case; or names, globs, families,
    # comma-separated), each into a folder under profile_dir that its record links
    profile: bool | str = _setting(False)
    profile_dir: str = _setting("profiles")
    # replicates: each timed case measured this many times, in as many rounds, the order of
    # the cases shuffled in each round (attnbench/runner/rounds.py); tasks run once
    repeat: int = _setting(1, minimum=1, maximum=1000)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureSettings:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "metrics" in kw:
            kw["metrics"] = tuple(kw["metrics"])
        return cls(**kw)

    def profiles(self, variant: str, label: str) -> bool:
        """Whether `profile` selects a case of `variant` (its row `label`)."""
        if isinstance(self.profile, bool):
            return self.profile
        patterns = [p.strip() for p in self.profile.split(",") if p.strip()]
        family = variant.split(".", 1)[0]
        return any(
            p == family or fnmatch.fnmatchcase(variant, p) or fnmatch.fnmatchcase(label, p) for p in patterns
        )

    @classmethod
    def suite_keys(cls) -> dict[str, str]:
        """[suite] key -> field name."""
        return {f.metadata.get("suite_key") or f.name: f.name for f in fields(cls)}

    @classmethod
    def from_suite(cls, meta: dict[str, Any]) -> MeasureSettings:
        """The settings a [suite] table sets; the rest keep their defaults."""
        return cls.from_dict({name: meta[key] for key, name in cls.suite_keys().items() if key in meta})

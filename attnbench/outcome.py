"""What running one case returns, whatever ran it (in this process, a worker, another host):
its status, metrics, flags and environment. A results record is a case plus its outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Outcome:
    status: str  # one of attnbench.results.store.STATUSES
    error: str | None = None  # why it did not run or failed
    metrics: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # noisy, fallback_eager, …
    env: dict[str, Any] = field(default_factory=dict)  # versions, device, threads
    wall_s: float | None = None  # the whole case, set-up included

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as sent between processes (a worker of another revision included)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Outcome:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

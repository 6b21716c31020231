"""Make torch.compile's silent failure modes visible.

Past `recompile_limit` compilations of one function, dynamo quietly runs it eagerly; for
FlexAttention that means materialising every score (seen: Flex at the naive speed on CPU,
371 → 14 TFLOP/s then OOM on an H100). A change of global state, such as the thread count,
also triggers a recompile. The guard:

- sets `recompile_limit` on purpose (large enough for a sweep's shapes) and asks dynamo to
  raise instead of falling back silently;
- on that error, re-runs the call under the `force_eager` stance (what the silent fall-back
  would have done) and flags the case `fallback_eager`, so its numbers are kept but marked;
- counts graphs compiled during warm-up and during the timed region; a compile inside the
  timed region flags the case `recompiled_during_timing`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch._dynamo
from torch._dynamo.exc import FailOnRecompileLimitHit
from torch._dynamo.utils import counters

FALLBACK = "fallback_eager"
RECOMPILED = "recompiled_during_timing"


def _limit_key() -> str:
    return (
        "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    )  # < 2.6


def configure(recompile_limit: int) -> None:
    """Size dynamo's per-function cache for the sweep and make overflow an error. The settings
    are process-wide: they outlive the case (`configured` gives them, to put back)."""
    cfg = torch._dynamo.config
    setattr(cfg, _limit_key(), recompile_limit)
    cfg.accumulated_recompile_limit = max(getattr(cfg, "accumulated_recompile_limit", 0), 4 * recompile_limit)
    cfg.fail_on_recompile_limit_hit = True


def configured() -> dict[str, object]:
    """The current values of the dynamo settings `configure` changes."""
    keys = (_limit_key(), "accumulated_recompile_limit", "fail_on_recompile_limit_hit")
    return {k: getattr(torch._dynamo.config, k) for k in keys if hasattr(torch._dynamo.config, k)}


def compiled_frames() -> int:
    """Frames dynamo has compiled successfully in this process so far."""
    return counters["frames"]["ok"]


@dataclass
class CompileGuard:
    compiles_in_warmup: int = 0
    compiles_in_timing: int = 0
    fell_back: bool = False
    _mark: int = field(default=0, repr=False)

    def first_call(self, fn: Callable[[], object]) -> None:
        """The first (compiling) call of a case. On a hit recompile limit, later calls run
        under `stance()` in eager mode, as the silent fall-back would."""
        before = compiled_frames()
        try:
            fn()
        except FailOnRecompileLimitHit:
            self.fell_back = True
            with self.stance():
                fn()
        self.compiles_in_warmup = compiled_frames() - before

    def stance(self) -> contextlib.AbstractContextManager:
        if self.fell_back:
            return torch.compiler.set_stance("force_eager")
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Wrap the timed region: counts compilations that happen inside it."""
        before = compiled_frames()
        try:
            yield
        finally:
            self.compiles_in_timing += compiled_frames() - before

    @property
    def flags(self) -> list[str]:
        return ([FALLBACK] if self.fell_back else []) + ([RECOMPILED] if self.compiles_in_timing else [])

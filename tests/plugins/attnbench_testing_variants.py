"""Test-only variants that misbehave on purpose, loaded as a plugin (ATTNBENCH_PLUGINS).

`testing.oom` allocates far past the worker's memory cap, `testing.crash` kills its own
process, `testing.hang` sleeps past any timeout, `testing.slow` takes a second a call (time
to stop it mid-case), `testing.recompiles` recompiles on every call, `testing.faults` touches
freshly mapped memory in every call (page faults inside the timed region); `testing.ok` is a
correct variant that runs beside them. Registration happens on
import, so a worker that imports this module as a plugin knows them; `register_all`
re-registers them in the test process after a teardown.
"""

from __future__ import annotations

import mmap
import os
import signal
import time

import numpy as np
import torch

from attnbench.registry import REGISTRY
from attnbench.variants.softmax.common import SoftmaxAttention


class Ok(SoftmaxAttention):
    """Correct softmax attention through SDPA's math path."""

    def forward(self, q, k, v, *, causal=False):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


class Oom(SoftmaxAttention):
    """Allocates 64 GiB."""

    def forward(self, q, k, v, *, causal=False):
        waste = torch.ones(64 << 30, dtype=torch.uint8)
        return q + waste[0]


class Crash(SoftmaxAttention):
    """Dies of SIGSEGV, as a broken extension would."""

    def forward(self, q, k, v, *, causal=False):
        os.kill(os.getpid(), signal.SIGSEGV)
        return q


class Hang(SoftmaxAttention):
    """Never returns within a test's timeout."""

    def forward(self, q, k, v, *, causal=False):
        time.sleep(3600)
        return q


class Slow(Ok):
    """Correct, and a second a call."""

    def forward(self, q, k, v, *, causal=False):
        time.sleep(1.0)
        return super().forward(q, k, v, causal=causal)


class Faults(Ok):
    """Correct, and faults in 16 MiB of freshly mapped pages every call, as an allocator that
    hands memory back to the kernel between calls would."""

    def forward(self, q, k, v, *, causal=False):
        fresh = mmap.mmap(-1, 16 << 20)
        np.frombuffer(fresh, dtype=np.uint8)[:: mmap.PAGESIZE] = 1  # the first touch of each page
        fresh.close()
        return super().forward(q, k, v, causal=causal)


_CALLS = [0]


@torch.compile(backend="eager", dynamic=False)
def _plus_nothing(x: torch.Tensor, n: int) -> torch.Tensor:
    return x + 0 * n


class Recompiles(SoftmaxAttention):
    """Correct attention through a compiled no-op whose int argument changes every call:
    dynamo specialises on it and recompiles each time, as a changing thread count would."""

    compiled = True

    def forward(self, q, k, v, *, causal=False):
        _CALLS[0] += 1
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return _plus_nothing(out, _CALLS[0])


VARIANTS = {
    "testing.ok": Ok,
    "testing.oom": Oom,
    "testing.crash": Crash,
    "testing.hang": Hang,
    "testing.slow": Slow,
    "testing.recompiles": Recompiles,
    "testing.faults": Faults,
}
NAMES = tuple(VARIANTS)


def register_all() -> None:
    for name, cls in VARIANTS.items():
        REGISTRY.register(name)(cls)


register_all()

"""Triton kernels (forward only) for the variants that have a fused GPU form.

The kernel modules import `triton` at import time, so import them lazily (inside `forward`):
the variant registry's discovery must not need Triton. Under `TRITON_INTERPRET=1` (set before
`triton` is imported) they also run on CPU tensors, which is how the tests check them. The
shape checks here and the shared-memory budget (`budget.py`) need no Triton, so a variant's
`check` can use them anywhere.
"""

from __future__ import annotations

from attnbench.errors import Unsupported


def check_chunk(chunk: int) -> None:
    if chunk < 16 or chunk & (chunk - 1):
        raise Unsupported(f"Triton chunk kernels need a chunk that is a power of two ≥ 16, not {chunk}")

"""A steady CPU allocator for timing.

glibc's malloc serves large blocks with mmap and raises that threshold each time such a block
is freed (up to 32 MiB on 64-bit). So the same tensor allocation costs fresh page faults
early in a process and reuses warm heap memory later: the same SDPA call was measured here at
10.9 ms and at 4.7 ms in one process, depending on what ran before. Fixing the thresholds at
glibc's own ceiling from the start (mmap above 32 MiB, trim above 64 MiB) gives every case
the allocator a long-running process settles into, whatever ran before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


@functools.cache
def steady_cpu_allocator() -> str:
    """Pin glibc's malloc thresholds for this process; returns what was done, for the record."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return "default (not glibc)"
    return f"glibc mmap_threshold={MMAP_THRESHOLD >> 20}MiB trim_threshold={TRIM_THRESHOLD >> 20}MiB"

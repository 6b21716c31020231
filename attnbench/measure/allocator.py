"""A steady CPU allocator for timing.

glibc's malloc serves large blocks with mmap, so every allocation of such a block costs fresh
page faults, and it raises the mmap threshold each time one is freed (up to 32 MiB on 64-bit)
and trims the heap top, so what a call costs depends on what ran before it. Measured here: the
same SDPA call at 10.9 ms and 4.7 ms in one process; FAVOR+ at N = 8192 (32 MiB feature
tensors) at 100 ms with 40,000 page faults per call against 61 ms with none, and `linear.elu`
slowing from 28 to 44 ms after it. Serving every block from the heap (no mmap) and keeping
freed memory (trim only above 2 GiB) gives every case the allocator a long-running process
settles into, whatever ran before it: no page faults once warm. (mallopt takes a C int: the
4 GiB this module asked for until issue 19 wrapped to 0, which trimmed the heap on every free,
so every large allocation faulted all its pages in: 4,096 faults per 16 MiB block, measured.)

The price of keeping freed memory is a worker that grows over a sweep: each case of a slightly
larger size than the last left its blocks free but resident, fragmented around long-lived small
allocations (issue 16: 0.58 MiB per case over 500 small ascending cases with memory measured,
`benchmarks/worker_soak.py`). So between cases, never inside one, `release_free_memory` hands
the free pages back (`malloc_trim(0)`, which also returns whole free pages inside the heap); the
next case's first call and warm-up fault them in again before anything is timed.

`mallopt` takes a C int: the trim threshold first set here, 4 GiB, wrapped to 0 on the way in,
so glibc trimmed the heap top on every free and the next call faulted it back in — page
faults inside the timed region, each ~6 µs on the CI VM (issue 17 measured an SDPA call at
N = 2048 with 138 faults a call at threshold 0 against 14 at 2 GiB). The threshold is now the
largest a C int holds, and an argument that does not fit is refused instead of wrapped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = (1 << 31) - 1  # bytes: the most a C int holds (2 GiB)
C_INT_MAX = (1 << 31) - 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """glibc, or None where malloc is another libc's (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both are glibc's own)
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def steady_cpu_allocator() -> str:
    """Pin glibc's malloc behaviour for this process; returns what was done, for the record."""
    libc = _glibc()
    ok = (
        libc is not None
        and _mallopt(libc, M_MMAP_MAX, 0)
        and _mallopt(libc, M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not ok:
        return "default (not glibc)"
    return f"glibc mmap off, trim_threshold={TRIM_THRESHOLD}"


def _mallopt(libc: ctypes.CDLL, param: int, value: int) -> bool:
    """glibc's mallopt(int, int), refusing a value a C int cannot hold (ctypes would wrap it)."""
    if not -C_INT_MAX - 1 <= value <= C_INT_MAX:
        raise ValueError(f"mallopt({param}, {value}): the value does not fit in a C int")
    return libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1


def release_free_memory() -> None:
    """Give the heap's free pages back to the kernel; call between cases, not while timing."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)

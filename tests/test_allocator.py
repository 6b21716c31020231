"""The steady CPU allocator's settings are ones glibc can take."""

from __future__ import annotations

from attnbench.measure.allocator import TRIM_THRESHOLD


def test_trim_threshold_fits_the_c_int_mallopt_takes():
    """mallopt(int, int): 4 << 30 wrapped to 0, which trimmed the heap on every free."""
    assert 1 << 30 <= TRIM_THRESHOLD < 1 << 31

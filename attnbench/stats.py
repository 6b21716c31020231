"""The statistics behind replicates and the speed gate, small enough to read in one go and
exact where that is cheap: medians, a bootstrap confidence interval of a median, the
one-sided Mann–Whitney U test, the one-sided Wilcoxon signed-rank test for paired replicates,
and the Holm and Benjamini–Hochberg corrections.

Why these: replicates of a latency are few (3–30) and heavy-tailed on a shared machine (a
neighbour's burst doubles one replicate and leaves the next alone), so nothing here assumes
normality. The interval is criterion.rs's percentile bootstrap of the median, seeded so a
results file reads the same every time. The test is asv `continuous`'s rank test, exact for
the sizes replicates have (the U distribution is the Gaussian binomial coefficient), so a
p-value is never an approximation's artefact. A suite tests dozens of cases at once: a
correction across them bounds the chance that a job with no change at all raises an alarm
(Benjamini–Hochberg controls the false-discovery rate, which equals that chance when nothing
changed; Holm controls it whatever changed).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000  # bootstrap resamples: the 2.5 % and 97.5 % points move by < 1 % of the interval
EXACT_LIMIT = 50  # replicates a side up to which the U test is exact (normal approximation above)
CORRECTIONS = ("bh", "holm")


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def bootstrap_median_ci(
    values: Sequence[float], *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the median of `values`; None for fewer than 2 values
    (one replicate has no interval). Seeded: the same values give the same interval."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, len(x), (resamples, len(x)))], axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ratio_ci(
    num: Sequence[float],
    den: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of median(num) / median(den), each side resampled on its own (unpaired)."""
    a, b = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), (resamples, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), (resamples, len(b)))], axis=1)
    lo, hi = np.quantile(ma / mb, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@functools.cache
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the C(n+m, n) orderings of two samples of sizes n and m give each value of
    U (0 … n·m): the coefficients of the Gaussian binomial [n+m choose n]_q, built as
    ∏_{i=1..n} (1 − q^(m+i)) / (1 − q^i) in exact integer power-series arithmetic."""
    size = n * m + 1
    c = [1] + [0] * (size - 1)
    for i in range(1, n + 1):
        k = m + i
        for j in range(size - 1, k - 1, -1):  # times (1 − q^k)
            c[j] -= c[j - k]
        for j in range(i, size):  # divided by (1 − q^i)
            c[j] += c[j - i]
    return tuple(c)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float], *, shift: float = 0.0) -> float:
    """One-sided p-value of the Mann–Whitney U test that `x` is stochastically greater than
    `y + shift` (H0: it is not). U counts the pairs with x_i − shift > y_j (a tie counts ½).
    Exact (no ties, both sides ≤ EXACT_LIMIT); otherwise the normal approximation with tie and
    continuity corrections."""
    a = np.asarray(x, dtype=float) - shift
    b = np.asarray(y, dtype=float)
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return 1.0
    diff = a[:, None] - b[None, :]
    u = float((diff > 0).sum() + 0.5 * (diff == 0).sum())
    ties = bool((diff == 0).any()) or len(np.unique(np.concatenate([a, b]))) < n + m
    if not ties and n <= EXACT_LIMIT and m <= EXACT_LIMIT:
        counts = _u_counts(n, m)
        return sum(counts[math.ceil(u) :]) / math.comb(n + m, n)
    pooled = np.concatenate([a, b])
    _, tie_sizes = np.unique(pooled, return_counts=True)
    total = n + m
    var = n * m / 12 * ((total + 1) - ((tie_sizes**3 - tie_sizes).sum()) / (total * (total - 1)))
    if var <= 0:
        return 1.0
    z = (u - n * m / 2 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def smallest_p(n: int, m: int) -> float:
    """The least one-sided p-value the exact U test can give with n and m replicates: with
    few replicates no change, however large, can pass a strict threshold."""
    return 1 / math.comb(n + m, n)


@functools.cache
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2^n sign patterns of ranks 1 … n give each rank sum W+ (0 … n(n+1)/2):
    the coefficients of ∏_{i=1..n} (1 + q^i)."""
    c = [1] + [0] * (n * (n + 1) // 2)
    for i in range(1, n + 1):
        for j in range(len(c) - 1, i - 1, -1):
            c[j] += c[j - i]
    return tuple(c)


def wilcoxon_greater(d: Sequence[float], *, shift: float = 0.0) -> float:
    """One-sided p-value of the Wilcoxon signed-rank test that the paired differences `d` are
    centred above `shift` (H0: they are not). W+ sums the ranks of |d − shift| over the
    positive ones; zero differences are dropped (Wilcoxon's rule). Exact when no two |d − shift|
    tie and at most EXACT_LIMIT remain; otherwise the normal approximation with tie and
    continuity corrections. Pairs (one round's two sides, run back to back) cancel the drift
    between rounds that an unpaired test counts as noise."""
    x = np.asarray(d, dtype=float) - shift
    x = x[x != 0]
    n = len(x)
    if n == 0:
        return 1.0
    magnitude = np.abs(x)
    order = np.argsort(magnitude, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    values, inverse, tie_sizes = np.unique(magnitude, return_inverse=True, return_counts=True)
    if len(values) < n:  # average ranks within ties
        ranks = np.array([ranks[inverse == i].mean() for i in range(len(values))])[inverse]
    w = float(ranks[x > 0].sum())
    if len(values) == n and n <= EXACT_LIMIT:
        counts = _signed_rank_counts(n)
        return sum(counts[math.ceil(w) :]) / 2**n
    var = n * (n + 1) * (2 * n + 1) / 24 - ((tie_sizes**3 - tie_sizes).sum()) / 48
    if var <= 0:
        return 1.0
    z = (w - n * (n + 1) / 4 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def smallest_p_paired(n: int) -> float:
    """The least one-sided p-value the exact signed-rank test can give with n pairs."""
    return 2.0**-n


def adjust(pvalues: Sequence[float], method: str = "bh") -> list[float]:
    """p-values adjusted for testing them all at once (compare each with the job's α):
    `bh` (Benjamini–Hochberg step-up) or `holm` (Holm step-down)."""
    p = list(pvalues)
    k = len(p)
    order = sorted(range(k), key=lambda i: p[i])
    out = [1.0] * k
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (k - rank) * p[i]))
            out[i] = running
    elif method == "bh":
        running = 1.0
        for rank in range(k - 1, -1, -1):
            i = order[rank]
            running = min(running, k * p[i] / (rank + 1))
            out[i] = min(1.0, running)
    else:
        raise ValueError(f"unknown correction {method!r} (choose from {', '.join(CORRECTIONS)})")
    return out

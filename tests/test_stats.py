"""The statistics of replicates and of the speed gate, on planted samples: the exact U
distribution, p-values of identical and shifted samples, the Holm and Benjamini–Hochberg
corrections, and bootstrap intervals."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from attnbench import stats


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 3), (3, 4), (5, 5)])
def test_the_u_distribution_counts_every_ordering_of_two_samples(n, m):
    brute: Counter = Counter()
    for picked in itertools.combinations(range(n + m), n):
        others = set(range(n + m)) - set(picked)
        brute[sum(1 for i in picked for j in others if i > j)] += 1
    assert stats._u_counts(n, m) == tuple(brute[u] for u in range(n * m + 1))


def test_a_sample_entirely_above_the_other_gets_the_smallest_p():
    below, above = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]
    assert stats.mann_whitney_greater(above, below) == pytest.approx(1 / math.comb(10, 5))
    assert stats.mann_whitney_greater(above, below) == stats.smallest_p(5, 5)
    assert stats.mann_whitney_greater(below, above) == 1.0


def test_identical_distributions_give_no_small_p_values():
    rng = random.Random(1)
    draw = lambda: [rng.lognormvariate(0, 0.1) for _ in range(10)]
    ps = [stats.mann_whitney_greater(draw(), draw()) for _ in range(200)]
    assert sum(p <= 0.05 for p in ps) <= 20  # ~5 % expected under the null: 10 ± 3
    assert min(stats.adjust(ps, "holm")) > 0.05


def test_a_30_percent_shift_with_small_spread_is_found_and_the_minimum_effect_is_honoured():
    rng = random.Random(2)
    base = [rng.lognormvariate(0, 0.03) for _ in range(8)]
    slower = [1.3 * rng.lognormvariate(0, 0.03) for _ in range(8)]
    logs = lambda xs: [math.log(x) for x in xs]
    assert stats.mann_whitney_greater(logs(slower), logs(base), shift=math.log(1.05)) < 1e-3
    # the same samples against a minimum effect of 50 %: a 30 % slowdown is not past it
    assert stats.mann_whitney_greater(logs(slower), logs(base), shift=math.log(1.5)) > 0.5


def test_ties_use_the_normal_approximation_and_stay_in_range():
    p = stats.mann_whitney_greater([1, 1, 2, 2], [1, 2, 2, 3])
    assert 0.5 < p <= 1


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_the_signed_rank_distribution_counts_every_sign_pattern(n):
    brute = Counter(
        sum(r for r, up in zip(range(1, n + 1), signs, strict=True) if up)
        for signs in itertools.product((0, 1), repeat=n)
    )
    assert stats._signed_rank_counts(n) == tuple(brute[w] for w in range(n * (n + 1) // 2 + 1))


def test_signed_rank_p_values_of_planted_pairs():
    rng = random.Random(4)
    # every pair slower, beyond the shift: the smallest p the test can give
    assert stats.wilcoxon_greater([0.2 + 0.01 * i for i in range(8)], shift=0.05) == stats.smallest_p_paired(
        8
    )
    assert stats.wilcoxon_greater([-0.1 * (i + 1) for i in range(8)]) == 1.0
    # a brute-force p-value: W+ = 1 + 4 (ranks of 0.1 and 0.4) of ranks 1..4
    brute = sum(
        1
        for s in itertools.product((0, 1), repeat=4)
        if sum(r * u for r, u in zip((1, 2, 3, 4), s, strict=True)) >= 5
    )
    assert stats.wilcoxon_greater([0.1, -0.2, -0.3, 0.4]) == pytest.approx(brute / 16)
    # identical sides (pure noise pairs): p-values spread over (0, 1], about 5 % below 0.05
    ps = [stats.wilcoxon_greater([rng.gauss(0, 0.1) for _ in range(10)]) for _ in range(300)]
    assert 3 <= sum(p <= 0.05 for p in ps) <= 30
    # a 30 % slowdown is found against a 5 % minimum effect, not against a 50 % one
    slower = [math.log(1.3) + rng.gauss(0, 0.03) for _ in range(8)]
    assert stats.wilcoxon_greater(slower, shift=math.log(1.05)) < 0.01
    assert stats.wilcoxon_greater(slower, shift=math.log(1.5)) == 1.0
    # ties and zeros: the normal approximation, in range
    assert 0 < stats.wilcoxon_greater([0.0, 0.1, 0.1, -0.1, 0.2]) <= 1


def test_holm_and_benjamini_hochberg_on_a_worked_example():
    ps = [0.01, 0.04, 0.03, 0.2]
    # Holm: sorted 0.01·4, 0.03·3, 0.04·2 (kept monotone), 0.2·1
    assert stats.adjust(ps, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.2])
    # BH: 0.01·4/1, 0.03·4/2 = 0.06, 0.04·4/3 = 0.0533 (step-up minimum), 0.2·4/4
    assert stats.adjust(ps, "bh") == pytest.approx([0.04, 0.05333, 0.05333, 0.2], rel=1e-3)
    with pytest.raises(ValueError, match="unknown correction"):
        stats.adjust(ps, "bonferroni-ish")


def test_correcting_across_many_cases_keeps_a_job_of_pure_noise_quiet():
    """40 cases whose smallest raw p-value would pass 0.05 alone; corrected, none does."""
    ps = [0.01 + 0.02 * i for i in range(40)]
    assert min(ps) <= 0.05
    for method in stats.CORRECTIONS:
        assert min(stats.adjust(ps, method)) > 0.05


def test_bootstrap_interval_holds_the_median_is_seeded_and_narrows_with_more_replicates():
    rng = random.Random(3)
    few = [rng.gauss(10, 1) for _ in range(5)]
    many = [rng.gauss(10, 1) for _ in range(60)]
    lo, hi = stats.bootstrap_median_ci(few)
    assert min(few) <= lo <= stats.median(few) <= hi <= max(few)
    assert stats.bootstrap_median_ci(few) == (lo, hi)  # the same values, the same interval
    lo2, hi2 = stats.bootstrap_median_ci(many)
    assert hi2 - lo2 < hi - lo
    assert stats.bootstrap_median_ci([1.0]) is None


def test_ratio_interval_of_a_constant_ratio_is_that_ratio():
    lo, hi = stats.bootstrap_ratio_ci([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert lo == hi == 2.0

import math

import numpy as np
import pytest
from scipy import stats

from analysis.evidence.claims import (
    FAILS,
    HOLDS,
    PAIRED_EQUIVALENT,
    PAIRED_HOLDS,
    PAIRED_INCONCLUSIVE,
    PAIRED_OPPOSITE,
    UNSURE,
    check_all,
    compare_means,
    compare_paired,
    paired_differences,
    sign_flip_p_value,
    t_interval,
)


@pytest.mark.parametrize(
    "sdt,tet,tet_is,expected",
    [
        ([10.0, 11.0, 12.0], [5.0, 6.0, 7.0], "lower", HOLDS),  # diff -5, se 0.82
        ([10.0, 11.0, 12.0], [5.0, 6.0, 7.0], "higher", FAILS),
        ([10.0, 11.0, 12.0], [10.5, 11.5, 9.0], "lower", UNSURE),
        ([0.90, 0.91, 0.92], [0.95, 0.96, 0.97], "higher", HOLDS),
        ([1.0], [0.0], "lower", UNSURE),  # one seed: no error bar
        ([1.0, 1.0], [1.0, 1.0], "lower", UNSURE),  # no difference
        ([1.0, 1.0], [0.5, 0.5], "lower", HOLDS),  # zero spread, clear difference
    ],
)
def test_compare_means_rule(sdt, tet, tet_is, expected):
    assert compare_means("c", "e", sdt, tet, tet_is).verdict == expected


def test_standard_error_is_that_of_the_difference():
    verdict = compare_means("c", "e", [1.0, 3.0], [2.0, 6.0], "higher")
    assert verdict.difference == pytest.approx(2.0)
    assert verdict.stderr == pytest.approx(math.sqrt(2.0 / 2 + 8.0 / 2))
    assert verdict.verdict == UNSURE  # 2 < 2 * 2.236


def test_nan_values_are_ignored_and_bad_direction_rejected():
    assert compare_means("c", "e", [1.0, 1.1, float("nan")], [2.0, 2.1], "higher").verdict == HOLDS
    with pytest.raises(ValueError, match="candidate_is must be"):
        compare_means("c", "e", [1.0], [1.0], "smaller")


def test_check_all():
    assert check_all("c", "e", [True, True]).verdict == HOLDS
    assert check_all("c", "e", [True, False]).verdict == FAILS
    assert "1/2 runs" in check_all("c", "e", [True, False]).evidence
    assert check_all("c", "e", []).verdict == UNSURE


# --- the paired rule ---


@pytest.mark.parametrize(
    "differences,expected",
    [
        # +-1 +-2 +-3: sums 6, 4, 2, 0, 0, -2, -4, -6; |s| >= 6 for 2 of 8 patterns
        ([1.0, 2.0, 3.0], 2 / 8),
        # {2, 1, 3, 1} signed, observed |sum| = 5: 7, 5 (flip the first 1), 5 (flip the
        # second 1) and their mirrors: 6 of 16
        ([2.0, -1.0, 3.0, 1.0], 6 / 16),
        ([1.0] * 6, 2 / 64),  # only all + and all -
        ([1.0] * 5, 2 / 32),  # five pairs can never reach p < 0.05
        ([0.0, 0.0], 1.0),  # no difference: every pattern ties
        ([1.5], 1.0),  # one pair: both patterns have |s| = 1.5
    ],
)
def test_sign_flip_p_value_exact_by_hand(differences, expected):
    p_value, method, count = sign_flip_p_value(differences)
    assert method == "exact" and count == 2 ** len(differences)
    assert p_value == pytest.approx(expected, abs=1e-15)


def test_sign_flip_matches_scipy_permutation_test():
    d = np.random.default_rng(1).normal(0.3, 1.0, size=12)
    reference = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert sign_flip_p_value(d)[0] == pytest.approx(reference.pvalue, abs=1e-12)


def test_sign_flip_monte_carlo_is_seeded_and_close():
    d = np.random.default_rng(2).normal(0.4, 1.0, size=22)  # exact by enumeration, 2^22 patterns
    sums = np.zeros(1)
    for value in d:
        sums = np.concatenate([sums + value, sums - value])
    exact = np.mean(np.abs(sums) >= abs(d.sum()) - 1e-9 * np.abs(d).sum())
    first = sign_flip_p_value(d, num_resamples=20_000, seed=5)
    assert first == sign_flip_p_value(d, num_resamples=20_000, seed=5)
    assert first[1:] == ("monte_carlo", 20_000)
    assert abs(first[0] - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4
    assert compare_paired("c", "e", np.zeros(22), d, "higher", 0.1, 20_000, seed=5).seed == 5


def test_t_interval_against_scipy():
    d = [1.0, 2.0, 3.0]  # mean 2, s = 1
    # two degrees of freedom have a closed form: t_p = (2p - 1) sqrt(2 / (4 p (1 - p)))
    t_975 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))
    low, high = t_interval(d, 0.95)
    assert high - 2.0 == pytest.approx(t_975 / math.sqrt(3), rel=1e-12)
    expected = stats.t.interval(0.95, df=2, loc=2.0, scale=1 / math.sqrt(3))
    assert (low, high) == pytest.approx(expected, rel=1e-12)
    d = [0.3, -0.1, 0.8, 0.2, 0.5]
    expected = stats.t.interval(0.9, df=4, loc=np.mean(d), scale=stats.sem(d))
    assert t_interval(d, 0.9) == pytest.approx(expected, rel=1e-12)
    assert all(math.isnan(v) for v in t_interval([1.0], 0.95))


def _paired(d, candidate_is, delta=0.1):
    return compare_paired("c", "e", [0.0] * len(d), d, candidate_is, delta)


HOLD_LOWER = [-1.0, -1.2, -0.9, -1.1, -1.05, -0.95]


@pytest.mark.parametrize(
    "d,candidate_is,expected",
    [
        (HOLD_LOWER, "lower", PAIRED_HOLDS),
        (HOLD_LOWER, "higher", PAIRED_OPPOSITE),
        ([-x for x in HOLD_LOWER], "higher", PAIRED_HOLDS),
        ([0.01, -0.02, 0.015, -0.01, 0.005, -0.005], "lower", PAIRED_EQUIVALENT),
        ([1.0, -1.0, 2.0, -2.0, 0.5], "lower", PAIRED_INCONCLUSIVE),
        ([-1.0] * 5, "lower", PAIRED_INCONCLUSIVE),  # p = 1/16: too few pairs
        ([-1.0], "lower", PAIRED_INCONCLUSIVE),  # n < 2: no interval
        ([], "lower", PAIRED_INCONCLUSIVE),
    ],
)
def test_each_paired_verdict(d, candidate_is, expected):
    assert _paired(d, candidate_is).verdict == expected


def test_paired_fields_and_small_n():
    verdict = _paired(HOLD_LOWER, "lower")
    assert verdict.n == 6 and verdict.p_value == pytest.approx(2 / 64)
    assert verdict.mean == pytest.approx(np.mean(HOLD_LOWER))
    assert verdict.ci_high < 0 and not verdict.within_margin and verdict.delta == 0.1
    assert verdict.permutation == "exact" and verdict.seed is None
    tiny = _paired([-0.01] * 6, "lower")  # resolved, but smaller than the margin
    assert tiny.verdict == PAIRED_HOLDS and tiny.within_margin
    one = _paired([-1.0], "lower")
    assert one.n == 1 and math.isnan(one.ci_low) and one.p_value == 1.0
    none = _paired([], "lower")
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.p_value)


def test_paired_pairing_and_validation():
    assert paired_differences([1.0, float("nan"), 3.0], [2.0, 5.0, 1.0]) == [1.0, -2.0]
    assert paired_differences({0: 1.0, 1: 2.0, 7: 9.0}, {1: 5.0, 0: 1.5}) == [0.5, 3.0]
    with pytest.raises(ValueError, match="one value per seed"):
        paired_differences([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="candidate_is must be"):
        compare_paired("c", "e", [1.0], [1.0], "smaller", 0.1)
    with pytest.raises(ValueError, match="delta must be > 0"):
        compare_paired("c", "e", [1.0], [1.0], "lower", 0.0)


def test_a_family_decides_with_the_adjusted_p_and_a_bonferroni_tost():
    plain = _paired(HOLD_LOWER, "lower")
    adjusted = compare_paired(
        "c", "e", [0.0] * 6, HOLD_LOWER, "lower", 0.1, adjusted_p=0.2, family_size=5
    )
    assert plain.verdict == PAIRED_HOLDS and adjusted.verdict == PAIRED_INCONCLUSIVE
    assert adjusted.p_value == plain.p_value and adjusted.adjusted_p == 0.2
    assert math.isnan(plain.adjusted_p) and plain.family_size == 1
    assert (
        compare_paired(
            "c", "e", [0.0] * 6, HOLD_LOWER, "lower", 0.1, adjusted_p=0.04, family_size=5
        ).verdict
        == PAIRED_HOLDS
    )
    # equivalence: the 1 - 0.1 / m interval must lie inside the margin
    d = [0.01, -0.02, 0.015, -0.01, 0.005, -0.005]
    wide = stats.t.interval(1 - 0.1 / 20, df=5, loc=np.mean(d), scale=stats.sem(d))
    found = compare_paired("c", "e", [0.0] * 6, d, "lower", 0.1, adjusted_p=1.0, family_size=20)
    assert (found.tost_low, found.tost_high) == pytest.approx(wide, rel=1e-12)
    assert found.verdict == PAIRED_EQUIVALENT
    narrow = compare_paired("c", "e", [0.0] * 6, d, "lower", 0.02, adjusted_p=1.0, family_size=20)
    assert _paired(d, "lower", 0.02).verdict == PAIRED_EQUIVALENT
    assert narrow.verdict == PAIRED_INCONCLUSIVE
    with pytest.raises(ValueError, match="family_size must be >= 1"):
        compare_paired("c", "e", [1.0], [1.0], "lower", 0.1, family_size=0)

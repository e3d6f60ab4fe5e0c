import math

import pytest

from analysis.claims import HOLDS, FAILS, UNSURE, check_all, compare_means


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

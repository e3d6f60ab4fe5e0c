import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.evidence.generalization import (
    granulated_kendall_tau,
    kendall_p_value,
    kendall_table,
    kendall_tau,
)


@pytest.mark.parametrize(
    "x,y",
    [
        ([1, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.4]),
        ([1, 1, 2, 2, 3, 3], [5, 4, 4, 3, 1, 2]),  # ties on both sides
        ([0, 0, 0, 1, 1], [1, 2, 2, 2, 3]),
        ([3.0, 1.0], [2.0, 7.0]),
    ],
)
def test_kendall_tau_matches_scipy(x, y):
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-14)


def test_kendall_tau_random_with_ties_and_nan():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, size=40).astype(float), rng.integers(0, 4, size=40).astype(float)
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-14)
    x[3], y[7] = np.nan, np.nan
    keep = ~(np.isnan(x) | np.isnan(y))
    expected = stats.kendalltau(x[keep], y[keep]).statistic
    assert kendall_tau(x, y) == pytest.approx(expected, abs=1e-14)


def test_kendall_tau_by_hand_and_degenerate():
    # pairs (1,2) +, (1,3) +, (2,3) -: (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [0.1, 0.3, 0.2]) == pytest.approx(1 / 3)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([1.0], [2.0]))
    with pytest.raises(ValueError, match="aligned"):
        kendall_tau([1, 2], [1])


# A 2 x 2 grid (axes A, B) x 2 seeds; one row per run: A, B, seed, measure, gap.
GRID = [
    (0, 0, 0, 1.0, 0.10),
    (1, 0, 0, 2.0, 0.20),
    (0, 1, 0, 3.0, 0.30),
    (1, 1, 0, 4.0, 0.25),
    (0, 0, 1, 1.5, 0.12),
    (1, 0, 1, 2.5, 0.22),
    (0, 1, 1, 3.5, 0.35),
    (1, 1, 1, 3.5, 0.30),  # measure tied with its A-neighbour
]


def test_granulated_tau_on_a_hand_made_grid():
    frame = pd.DataFrame(GRID, columns=["A", "B", "seed", "measure", "gap"])
    result = granulated_kendall_tau(
        frame["measure"], frame["gap"], frame[["A", "B", "seed"]], axes=["A", "B"]
    )
    # axis A, groups (B, seed): (0,0) +1, (1,0) -1, (0,1) +1, (1,1) tied measure -> skipped
    assert result.per_axis["A"] == pytest.approx(1 / 3)
    assert result.num_groups["A"] == 3 and result.num_skipped["A"] == 1
    # axis B, groups (A, seed): all four concordant
    assert result.per_axis["B"] == pytest.approx(1.0)
    assert result.num_groups["B"] == 4 and result.num_skipped["B"] == 0
    assert result.psi == pytest.approx((1 / 3 + 1) / 2)
    expected = stats.kendalltau(frame["measure"], frame["gap"]).statistic
    assert result.overall == pytest.approx(expected, abs=1e-14)
    assert result.num_runs == 8


def test_granulated_tau_groups_against_scipy_on_a_three_level_axis():
    rng = np.random.default_rng(1)
    rows = [(c, b, s) for c in range(3) for b in range(2) for s in range(3)]
    columns = {"C": [r[0] for r in rows], "B": [r[1] for r in rows], "seed": [r[2] for r in rows]}
    measure, gap = rng.normal(size=len(rows)), rng.normal(size=len(rows))
    result = granulated_kendall_tau(measure, gap, columns, axes=["C", "B"])
    taus = []
    for b in range(2):
        for s in range(3):
            runs = [i for i, r in enumerate(rows) if r[1] == b and r[2] == s]
            taus.append(stats.kendalltau(measure[runs], gap[runs]).statistic)
    assert result.per_axis["C"] == pytest.approx(np.mean(taus), abs=1e-14)
    assert result.num_groups["C"] == 6
    table = kendall_table({"m": measure, "minus_m": -measure}, gap, columns, axes=["C", "B"])
    assert table["minus_m"].psi == pytest.approx(-table["m"].psi, abs=1e-14)


def test_granulated_tau_validation():
    with pytest.raises(ValueError, match="axes must be"):
        granulated_kendall_tau([1, 2], [1, 2], {"A": [0, 1]}, axes=["lr"])
    with pytest.raises(ValueError, match="one per run"):
        granulated_kendall_tau([1, 2], [1, 2], {"A": [0, 1, 2]})
    # each (seed) group holds one run: nothing varies A within a group
    single = granulated_kendall_tau([1, 2], [1, 2], {"A": [0, 1], "seed": [0, 1]}, axes=["A"])
    assert math.isnan(single.per_axis["A"]) and math.isnan(single.psi)
    assert single.num_groups["A"] == 0 and single.num_skipped["A"] == 2


def test_kendall_p_value_exact_by_counting():
    # n = 5, perfectly concordant: only 1 of the 5! orderings reaches |tau| = 1 on each side
    assert kendall_p_value([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(2 / 120)
    assert kendall_p_value([1, 2, 3, 4, 5], [50, 40, 30, 20, 10]) == pytest.approx(2 / 120)
    assert math.isnan(kendall_p_value([1, 1, 1], [1, 2, 3]))

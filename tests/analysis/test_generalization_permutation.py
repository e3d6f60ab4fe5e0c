"""Permutation nulls of Kendall's tau and the granulated Psi (analysis.evidence.generalization)."""

import itertools
import math
import time

import numpy as np
import pytest

from analysis.evidence.generalization import (
    granulated_kendall_tau,
    kendall_tau,
    permutation_null,
    permuted_taus,
)


def _grid(levels=(5, 5, 2, 2), names="ABCD"):
    rows = list(itertools.product(*(range(k) for k in levels)))
    return {name: [row[i] for row in rows] for i, name in zip(range(len(levels)), names)}, len(rows)


def _population(seed, strength=0.3, levels=(5, 5, 2, 2)):
    columns, n = _grid(levels)
    rng = np.random.default_rng(seed)
    gap = rng.normal(size=n)
    return strength * gap + rng.normal(size=n), gap, columns


def _with_holes_and_ties():
    measure, gap, columns = _population(0, levels=(3, 3, 2, 2))
    measure, gap = np.round(measure, 1), np.round(gap, 1)  # ties on both sides
    measure[[2, 7]], gap[[7, 11]] = np.nan, np.nan
    columns["seed"] = columns.pop("D")  # a column that is no axis: it only defines the groups
    return measure, gap, columns, ["A", "B", "C"]


def test_identity_permutation_gives_kendall_and_granulated_tau():
    measure, gap, columns, axes = _with_holes_and_ties()
    expected = granulated_kendall_tau(measure, gap, columns, axes)
    identity = np.arange(len(measure))[None, :]
    found = permuted_taus(measure, gap, columns, axes, identity)
    assert found.overall[0] == kendall_tau(measure, gap) == expected.overall
    assert found.psi[0] == pytest.approx(expected.psi, abs=1e-12)
    for axis in axes:
        assert found.per_axis[axis][0] == pytest.approx(expected.per_axis[axis], abs=1e-12)
        assert found.num_groups[axis][0] == expected.num_groups[axis]
        assert found.num_skipped[axis][0] == expected.num_skipped[axis]
    null = permutation_null(measure, gap, columns, axes, num_permutations=50)
    assert null.overall == expected.overall and null.psi == pytest.approx(expected.psi)
    assert null.num_groups == expected.num_groups and null.num_skipped == expected.num_skipped
    assert null.num_runs == len(measure) and null.num_permuted == len(measure) - 3


def test_each_permutation_matches_the_loop_over_granulated_tau():
    measure, gap, columns, axes = _with_holes_and_ties()
    complete = np.flatnonzero(~(np.isnan(measure) | np.isnan(gap)))
    rng = np.random.default_rng(1)
    permutations = np.tile(np.arange(len(measure)), (20, 1))
    for row in permutations:
        row[complete] = rng.permutation(complete)
    found = permuted_taus(measure, gap, columns, axes, permutations)
    for j, row in enumerate(permutations):
        expected = granulated_kendall_tau(measure, gap[row], columns, axes)
        assert found.overall[j] == pytest.approx(expected.overall, abs=1e-12)
        assert found.psi[j] == pytest.approx(expected.psi, abs=1e-12, nan_ok=True)
        for axis in axes:
            assert found.per_axis[axis][j] == pytest.approx(
                expected.per_axis[axis], abs=1e-12, nan_ok=True
            )
            assert found.num_groups[axis][j] == expected.num_groups[axis]
            assert found.num_skipped[axis][j] == expected.num_skipped[axis]


def test_p_values_are_valid_and_reproducible():
    measure, gap, columns = _population(2)
    first = permutation_null(measure, gap, columns, num_permutations=300, seed=4)
    assert first == permutation_null(measure, gap, columns, num_permutations=300, seed=4)
    other = permutation_null(measure, gap, columns, num_permutations=300, seed=5)
    assert other.overall == first.overall and other.p_per_axis != first.p_per_axis
    values = [first.p_overall, first.p_psi, *first.p_per_axis.values()]
    assert all(1 / 301 <= p <= 1 for p in values)
    assert all(round(p * 301) == pytest.approx(p * 301) for p in values)  # (1 + hits) / (1 + B)
    assert first.num_permutations == 300 and first.seed == 4


def test_a_monotone_measure_gets_the_smallest_p():
    _, gap, columns = _population(3)
    result = permutation_null(np.exp(gap), gap, columns, num_permutations=500)
    assert result.overall == 1.0 and result.psi == 1.0
    smallest = 1 / 501
    assert result.p_overall == result.p_psi == smallest
    assert set(result.p_per_axis.values()) == {smallest}
    reversed_ = permutation_null(-gap, gap, columns, num_permutations=500)  # two-sided
    assert reversed_.psi == -1.0 and reversed_.p_psi == smallest


def test_an_independent_measure_gets_roughly_uniform_p():
    columns, n = _grid((5, 5, 2, 2))
    found = {"overall": [], "psi": [], "A": []}
    for seed in range(50):
        rng = np.random.default_rng(1000 + seed)
        measure, gap = rng.normal(size=n), rng.normal(size=n)
        result = permutation_null(measure, gap, columns, num_permutations=199, seed=seed)
        found["overall"].append(result.p_overall)
        found["psi"].append(result.p_psi)
        found["A"].append(result.p_per_axis["A"])
    for values in found.values():
        assert 0.35 < np.mean(values) < 0.65
        assert np.mean(np.array(values) <= 0.1) < 0.3  # no pile-up of small p


def test_degenerate_inputs_give_nan_not_errors():
    columns, n = _grid((3, 2))
    flat = permutation_null(np.ones(n), np.arange(n, dtype=float), columns, num_permutations=20)
    assert math.isnan(flat.overall) and math.isnan(flat.p_overall) and math.isnan(flat.p_psi)
    assert flat.num_groups == {"A": 0, "B": 0}
    empty = permutation_null([np.nan] * n, np.arange(n, dtype=float), columns, num_permutations=5)
    assert empty.num_permuted == 0 and math.isnan(empty.p_psi)


def test_bad_inputs():
    measure, gap, columns, axes = _with_holes_and_ties()
    with pytest.raises(ValueError, match="axes must be"):
        permutation_null(measure, gap, columns, ["lr"])
    with pytest.raises(ValueError, match="num_permutations"):
        permutation_null(measure, gap, columns, axes, num_permutations=0)
    swap_nan = np.arange(len(measure))[None, :].copy()
    swap_nan[0, [0, 2]] = [2, 0]  # run 2 has no measure: it may not move
    with pytest.raises(ValueError, match="only the runs"):
        permuted_taus(measure, gap, columns, axes, swap_nan)
    with pytest.raises(ValueError, match="integers"):
        permuted_taus(measure, gap, columns, axes, np.zeros((1, 3), int))


def test_two_thousand_permutations_of_a_hundred_runs_are_fast():
    measure, gap, columns = _population(6)  # 5 x 5 x 2 x 2 = 100 runs, 4 axes
    start = time.perf_counter()
    permutation_null(measure, gap, columns, num_permutations=2000)
    assert time.perf_counter() - start < 10.0

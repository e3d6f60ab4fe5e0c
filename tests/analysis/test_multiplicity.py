"""Westfall-Young adjustment over several paired metrics (analysis.evidence.claims.westfall_young)
against a brute-force reference written from the definitions."""

import itertools
import math

import numpy as np
import pytest

from analysis.evidence.claims import (
    MULTIPLICITY_METHODS,
    sign_flip_p_value,
    westfall_young,
)

# --- the reference: every sign pattern, every statistic recomputed from its signed differences ---


def _t(values):
    """|mean| / (sd / sqrt(n)) with the sample sd; inf for zero spread, NaN for n < 2 or all 0."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2 or not np.any(x):
        return math.nan
    sd = np.std(x, ddof=1)
    return math.inf if sd == 0 else abs(np.mean(x)) / (sd / math.sqrt(x.size))


def _reaches(value, observed):
    return value >= observed * (1 - 1e-9)


def _reference(matrix, method):
    """raw and adjusted p-values, metric index -> p, straight from Westfall & Young's
    definitions: a loop over itertools.product of the shared signs."""
    n, num_metrics = matrix.shape
    present = ~np.isnan(matrix)
    patterns = [np.array(e) for e in itertools.product((1.0, -1.0), repeat=n)]
    null = [  # null[e][k]: metric k's |t| when pair i's difference is multiplied by e_i
        [_t(e[present[:, k]] * matrix[present[:, k], k]) for k in range(num_metrics)]
        for e in patterns
    ]
    observed = null[0]  # the first pattern is all +1
    valid = [k for k in range(num_metrics) if not math.isnan(observed[k])]
    raw = {k: sum(_reaches(row[k], observed[k]) for row in null) / len(null) for k in valid}
    if method == "step_down_min_p":
        # p-value each pattern would give each metric
        p_null = [
            {k: sum(_reaches(other[k], row[k]) for other in null) / len(null) for k in valid}
            for row in null
        ]
        order = sorted(sorted(valid, key=lambda k: -observed[k]), key=lambda k: raw[k])
        tilde = []
        for j, k in enumerate(order):
            rest = order[j:]
            hits = sum(min(p[r] for r in rest) <= raw[k] + 1e-12 for p in p_null)
            tilde.append(hits / len(null))
    else:
        order = sorted(valid, key=lambda k: -observed[k])
        tilde = []
        for j, k in enumerate(order):
            rest = order[j:] if method == "step_down_max_t" else order
            hits = sum(_reaches(max(row[r] for r in rest), observed[k]) for row in null)
            tilde.append(hits / len(null))
    adjusted = dict(zip(order, np.maximum.accumulate(tilde)))
    return raw, adjusted


def _case(index):
    """A small random case: 4-8 pairs, 2-5 metrics, correlated or not, some NaNs."""
    rng = np.random.default_rng(100 + index)
    n, num_metrics = 4 + index % 5, 2 + index % 4
    effects = rng.uniform(0.0, 1.5, size=num_metrics) * rng.choice([-1, 1], size=num_metrics)
    scales = 10.0 ** rng.integers(-3, 4, size=num_metrics)  # different units
    noise = rng.normal(size=(n, num_metrics))
    if index % 2:  # correlated: a shared per-pair factor
        noise = 0.4 * noise + rng.normal(size=(n, 1))
    matrix = (effects + noise) * scales
    if index % 3 == 0:
        holes = rng.random(size=matrix.shape) < 0.15
        holes[:2] = False  # every metric keeps at least two pairs
        matrix[holes] = np.nan
    return matrix


def _as_mapping(matrix):
    return {f"m{k}": matrix[:, k] for k in range(matrix.shape[1])}


def _holm(raw):
    names, out, running = sorted(raw, key=raw.get), {}, 0.0
    for position, name in enumerate(names):
        running = max(running, min(1.0, (len(names) - position) * raw[name]))
        out[name] = running
    return out


@pytest.mark.parametrize("method", MULTIPLICITY_METHODS)
@pytest.mark.parametrize("index", range(12))
def test_matches_the_brute_force_reference(index, method):
    matrix = _case(index)
    result = westfall_young(_as_mapping(matrix), method=method)
    raw, adjusted = _reference(matrix, method)
    assert result.permutation == "exact" and result.num_permutations == 2 ** matrix.shape[0]
    assert result.seed is None and result.num_pairs == matrix.shape[0]
    for k in range(matrix.shape[1]):
        assert result.raw[f"m{k}"] == pytest.approx(raw[k], abs=1e-12)
        assert result.adjusted[f"m{k}"] == pytest.approx(adjusted[k], abs=1e-12)


def test_matches_the_reference_with_tied_and_constant_differences():
    # +-1 differences tie under many patterns; "c" is constant (t = inf); "z" is all zero (NaN)
    matrix = np.array(
        [
            [1.0, 2.0, 0.5, 0.0],
            [-1.0, 2.0, 1.5, 0.0],
            [1.0, 2.0, -0.5, 0.0],
            [1.0, 2.0, 1.0, 0.0],
            [-1.0, 2.0, 2.5, 0.0],
            [1.0, 2.0, 0.5, 0.0],
        ]
    )
    for method in MULTIPLICITY_METHODS:
        result = westfall_young(dict(zip("qcrz", matrix.T)), method=method)
        raw, adjusted = _reference(matrix, method)
        assert result.t["c"] == math.inf and math.isnan(result.t["z"])
        assert math.isnan(result.raw["z"]) and math.isnan(result.adjusted["z"])
        assert result.raw["c"] == 2 / 64 and "z" not in result.order
        for k, name in enumerate("qcr"):
            assert result.raw[name] == pytest.approx(raw[k], abs=1e-12)
            assert result.adjusted[name] == pytest.approx(adjusted[k], abs=1e-12)


@pytest.mark.parametrize("index", range(12))
def test_raw_is_the_single_metric_sign_flip_p_value(index):
    matrix = _case(index)
    result = westfall_young(_as_mapping(matrix))
    for k in range(matrix.shape[1]):
        column = matrix[:, k]
        expected = sign_flip_p_value(column[~np.isnan(column)])[0]
        assert result.raw[f"m{k}"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("method", MULTIPLICITY_METHODS)
def test_adjusted_is_at_least_raw_and_monotone_in_the_order(method):
    for index in range(12):
        result = westfall_young(_as_mapping(_case(index)), method=method)
        adjusted = [result.adjusted[name] for name in result.order]
        assert all(result.adjusted[m] >= result.raw[m] for m in result.order)
        assert adjusted == sorted(adjusted)
        if method != "step_down_min_p":  # max-T steps down in the order of |t|
            t_values = [result.t[name] for name in result.order]
            assert t_values == sorted(t_values, reverse=True)


@pytest.mark.parametrize("method", MULTIPLICITY_METHODS)
def test_one_metric_is_not_adjusted(method):
    d = np.random.default_rng(3).normal(0.5, 1.0, size=9)
    result = westfall_young({"only": d}, method=method)
    assert result.adjusted["only"] == result.raw["only"] == sign_flip_p_value(d)[0]


@pytest.mark.parametrize("method", MULTIPLICITY_METHODS)
def test_full_correlation_costs_nothing(method):
    # the same differences in other units (and flipped: |t| is two-sided) are one test, not four
    d = np.random.default_rng(4).normal(0.6, 1.0, size=10)
    result = westfall_young({"a": d, "b": d, "kilo": 1000 * d, "minus": -d / 7}, method=method)
    expected = sign_flip_p_value(d)[0]
    assert set(result.adjusted.values()) == {expected}
    assert set(result.raw.values()) == {expected}


def test_independent_metrics_approach_holm():
    ratios = {"step_down_min_p": [], "step_down_max_t": []}
    for seed in range(25):
        rng = np.random.default_rng(seed)
        matrix = rng.normal(rng.uniform(0.0, 1.2, size=3), 1.0, size=(12, 3))
        for method, found in ratios.items():
            result = westfall_young(_as_mapping(matrix), method=method)
            holm = _holm(result.raw)
            for name in result.order:
                if method == "step_down_min_p":  # min-P is never above Holm
                    assert result.adjusted[name] <= holm[name] + 1e-12
                if holm[name] < 0.5:
                    found.append(result.adjusted[name] / holm[name])
    # little below Holm: independence leaves little to gain (Sidak instead of Bonferroni)
    assert min(ratios["step_down_min_p"]) > 0.6
    assert 0.9 < np.mean(ratios["step_down_min_p"]) <= 1.0
    assert 0.8 < np.mean(ratios["step_down_max_t"]) < 1.1


def test_max_t_can_exceed_holm_where_min_p_cannot():
    # "a" is positive in all 7 pairs (raw p = 2/128, the minimum) but its outlier keeps its t low
    # (2.16); "b"'s sign-flip t exceeds 2.16 under many patterns and dominates the maximum.
    a = [0.5, 0.7, 0.1, 0.6, 3.9, 1.4, 0.3]
    b = [-1.3, 1.7, 1.6, 0.0, 0.5, 0.6, 0.2]
    max_t = westfall_young({"a": a, "b": b})
    min_p = westfall_young({"a": a, "b": b}, method="step_down_min_p")
    assert max_t.raw["a"] == min_p.raw["a"] == 2 / 128
    assert max_t.adjusted["a"] > 2 * 2 / 128  # above Holm's 2 * raw
    assert min_p.adjusted["a"] <= 2 * 2 / 128
    assert max_t.order == ("a", "b") and max_t.t["a"] == pytest.approx(2.16, abs=0.01)


@pytest.mark.parametrize("method", MULTIPLICITY_METHODS)
def test_minimal_attainable_p_is_two_patterns(method):
    rng = np.random.default_rng(5)
    for n in (6, 10):
        matrix = rng.uniform(0.5, 2.0, size=(n, 3)) * [1.0, 10.0, -0.1]  # one sign in each metric
        result = westfall_young(_as_mapping(matrix), method=method)
        assert set(result.adjusted.values()) == {2 / 2**n}
    assert 2 / 2**5 > 0.05  # five pairs can never reach 0.05, adjusted or not


def _exact_sign_flip_p_of_integers(d):
    """P(|sum e_i d_i| >= |sum d_i|) over all 2^n patterns, by convolving the counts of sums."""
    d = np.asarray(d, dtype=np.int64)
    top = int(np.abs(d).sum())
    counts = np.zeros(2 * top + 1)  # counts[s + top]: patterns whose sum is s
    counts[top] = 1.0
    for value in np.abs(d):
        counts = np.roll(counts, value) + np.roll(counts, -value)  # never wraps: |s| <= top
    sums = np.arange(-top, top + 1)
    return counts[np.abs(sums) >= abs(int(d.sum()))].sum() / 2 ** len(d)


def test_monte_carlo_matches_exact_answers():
    d = np.random.default_rng(10).integers(-4, 7, size=25)
    exact = _exact_sign_flip_p_of_integers(d)
    assert 0.1 < exact < 0.2
    identical = {"d": d.astype(float), "kilo": 1000.0 * d, "minus": -d / 3.0}
    for method in MULTIPLICITY_METHODS:
        result = westfall_young(identical, num_resamples=100_000, seed=2, method=method)
        assert result.permutation == "monte_carlo" and result.num_permutations == 100_000
        assert result.seed == 2
        for name in identical:
            assert abs(result.adjusted[name] - exact) < 0.01
            assert result.adjusted[name] == result.raw[name]
    # raw p-values are drawn exactly as sign_flip_p_value draws them
    assert result.raw["d"] == sign_flip_p_value(d.astype(float), 100_000, seed=2)[0]


def test_monte_carlo_matches_enumeration_of_a_padded_case():
    # 20 pairs enumerate exactly; 5 more pairs of zero differences in every metric change neither
    # which pattern beats which (signs of zeros do nothing, t stays monotone in the same
    # quantity for every metric) nor any p-value, but push the count past 20 to Monte Carlo.
    rng = np.random.default_rng(7)
    shared = rng.normal(size=(20, 1))
    matrix = rng.uniform(0.1, 0.6, size=3) + 0.7 * rng.normal(size=(20, 3)) + 0.7 * shared
    padded = np.vstack([matrix, np.zeros((5, 3))])
    for method in MULTIPLICITY_METHODS:
        exact = westfall_young(_as_mapping(matrix), method=method)
        sampled = westfall_young(_as_mapping(padded), num_resamples=50_000, seed=1, method=method)
        assert exact.permutation == "exact" and sampled.permutation == "monte_carlo"
        assert exact.order == sampled.order
        assert any(exact.adjusted[m] > exact.raw[m] + 0.01 for m in exact.order)  # adjusts
        for name in exact.metrics:
            assert abs(sampled.adjusted[name] - exact.adjusted[name]) < 0.01
            assert abs(sampled.raw[name] - exact.raw[name]) < 0.01
        again = westfall_young(_as_mapping(padded), num_resamples=50_000, seed=1, method=method)
        assert again == sampled


def test_inputs_by_pair_and_missing_values():
    matrix = _case(0)  # has NaNs
    by_sequence = westfall_young(_as_mapping(matrix))
    by_pair = {
        f"m{k}": {
            f"seed{i}": matrix[i, k] for i in range(matrix.shape[0]) if matrix[i, k] == matrix[i, k]
        }
        for k in range(matrix.shape[1])
    }
    found = westfall_young(by_pair)
    assert found.raw == pytest.approx(by_sequence.raw) and found.n == by_sequence.n
    assert found.adjusted == pytest.approx(by_sequence.adjusted, abs=1e-12)
    # a metric with one pair has no t: NaN, and the others are adjusted as if it were absent
    lonely = dict(_as_mapping(matrix), lonely=[np.nan] * (matrix.shape[0] - 1) + [1.0])
    with_lonely = westfall_young(lonely)
    assert math.isnan(with_lonely.adjusted["lonely"]) and with_lonely.n["lonely"] == 1
    assert {m: with_lonely.adjusted[m] for m in by_sequence.metrics} == by_sequence.adjusted
    # a pair missing from every metric carries no sign
    extra = {name: np.append(values, np.nan) for name, values in _as_mapping(matrix).items()}
    assert westfall_young(extra).num_pairs == matrix.shape[0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="method must be"):
        westfall_young({"a": [1.0, 2.0]}, method="bonferroni")
    with pytest.raises(ValueError, match="aligned"):
        westfall_young({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(ValueError, match="not a mix"):
        westfall_young({"a": [1.0, 2.0], "b": {0: 1.0}})
    with pytest.raises(ValueError, match="at least one metric"):
        westfall_young({})
    nothing = westfall_young({"a": [1.0], "b": [np.nan]})
    assert nothing.order == () and math.isnan(nothing.adjusted["a"])

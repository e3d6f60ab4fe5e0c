"""The paper's claims, decided from measured numbers by one stated rule.

Rule: a claim that TET's value is lower (or higher) than SDT's (or, generally, a candidate's than
a baseline's) *holds* when the difference of the
means points the claimed way by more than two standard errors of that difference
(``se = sqrt(s_sdt^2 / n_sdt + s_tet^2 / n_tet)``, sample standard deviations over seeds); it
*does not hold* when it points the other way by more than two standard errors; otherwise, or with
fewer than two values per side, it is *inconclusive at this scale*.

Paired rule (:func:`compare_paired`, :data:`PAIRED_RULE`), for runs paired by seed (the SDT and TET
runs of seed s share initial weights and data order): ``d_s = candidate_s - baseline_s``;
``mean(d)`` with its 95 % Student-t interval and a two-sided sign-flip permutation p-value (exact
over all ``2^n`` sign patterns for ``n <= 20``, else seeded Monte Carlo). With an equivalence
margin ``delta`` stated per metric before the data, the verdict is, in this order:

1. *holds*: the 95 % interval excludes 0 on the claimed side and ``p < 0.05``;
2. *opposite*: the 95 % interval excludes 0 on the other side and ``p < 0.05``;
3. *equivalent*: the 90 % interval lies inside ``(-delta, delta)`` (two one-sided tests at 5 %);
4. otherwise *inconclusive*.

A resolved difference smaller than ``delta`` is reported as holds/opposite with
``within_margin=True``. The exact sign-flip p-value cannot go below ``2 / 2^n``: five pairs or
fewer can never give ``p < 0.05``, so holds/opposite need at least six seeds.

Several metrics at once (:func:`westfall_young`): Westfall & Young's step-down adjustment (max-T
or min-P) under the *joint* sign-flip distribution (one sign per pair, shared by every metric of
that pair), which controls the family-wise error rate and, unlike Bonferroni or Holm, pays
nothing for metrics that move together; :func:`compare_paired` then decides with the adjusted
p-value (``adjusted_p``) and a Bonferroni TOST interval over the family (``family_size``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = [
    "Verdict",
    "compare_means",
    "check_all",
    "RULE",
    "PairedVerdict",
    "compare_paired",
    "paired_differences",
    "t_interval",
    "sign_flip_p_value",
    "PAIRED_RULE",
    "MULTIPLICITY_METHODS",
    "AdjustedPValues",
    "westfall_young",
]

RULE = "difference of means beyond 2 standard errors (over seeds)"
HOLDS, FAILS, UNSURE = "holds", "does not hold", "inconclusive at this scale"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison."""

    claim: str
    evidence: str
    difference: float
    stderr: float
    verdict: str


def _mean_var(values: Sequence[float]) -> tuple[float, float, int]:
    values = [float(v) for v in values if v == v]  # drop NaN
    n = len(values)
    mean = math.fsum(values) / n if n else float("nan")
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else float("nan")
    return mean, var, n


def compare_means(
    claim: str,
    evidence: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    candidate_is: str,
) -> Verdict:
    """Decide whether ``candidate`` (e.g. TET's values over seeds) is ``"lower"`` or
    ``"higher"`` than ``baseline`` (e.g. SDT's), by RULE; ``difference`` is candidate - baseline.

    Raises:
        ValueError: If ``candidate_is`` is neither ``lower`` nor ``higher``.
    """
    if candidate_is not in ("lower", "higher"):
        raise ValueError(f"candidate_is must be 'lower' or 'higher', got {candidate_is!r}")
    tet_is = candidate_is
    (mean_s, var_s, n_s), (mean_t, var_t, n_t) = _mean_var(baseline), _mean_var(candidate)
    difference = mean_t - mean_s
    if n_s < 2 or n_t < 2:
        return Verdict(claim, evidence, difference, float("nan"), UNSURE)
    stderr = math.sqrt(var_s / n_s + var_t / n_t)
    signed = difference if tet_is == "higher" else -difference
    if signed > 2 * stderr and signed > 0:
        verdict = HOLDS
    elif signed < -2 * stderr and signed < 0:
        verdict = FAILS
    else:
        verdict = UNSURE
    return Verdict(claim, evidence, difference, stderr, verdict)


def check_all(claim: str, evidence: str, values: Sequence[bool]) -> Verdict:
    """A claim that must hold for every run (e.g. a lemma): holds iff all values are true."""
    values = list(values)
    if not values:
        return Verdict(claim, evidence, float("nan"), float("nan"), UNSURE)
    failures = sum(not v for v in values)
    verdict = HOLDS if failures == 0 else FAILS
    return Verdict(
        claim,
        f"{evidence} ({len(values) - failures}/{len(values)} runs)",
        float(failures),
        0.0,
        verdict,
    )


# --- The paired rule (seeds paired: SDT and TET of seed s share initial weights and data order) ---

PAIRED_RULE = (
    "paired over seeds: d_s = TET - SDT; holds if the 95 % t-interval of mean(d) excludes 0 on the "
    "claimed side and the two-sided sign-flip permutation p < 0.05; opposite if the same holds on "
    "the other side; equivalent if the 90 % t-interval lies inside (-delta, delta) (TOST at 5 %); "
    "otherwise inconclusive. In a family of m metrics, p is the family-wise adjusted p-value and "
    "the TOST interval is the 1 - 0.1/m one (Bonferroni)"
)
PAIRED_HOLDS, PAIRED_OPPOSITE = "holds", "opposite"
PAIRED_EQUIVALENT, PAIRED_INCONCLUSIVE = "equivalent", "inconclusive"
ALPHA = 0.05
EXACT_MAX_N = 20


@dataclass(frozen=True)
class PairedVerdict:
    """The outcome of one paired comparison (see :data:`PAIRED_RULE`).

    Attributes:
        claim: What is claimed, e.g. ``"TET lower lambda_max"``.
        evidence: The metric compared.
        candidate_is: The claimed direction of candidate - baseline: ``"lower"`` or ``"higher"``.
        n: Number of complete pairs (NaN pairs dropped).
        mean: Mean difference ``mean(candidate - baseline)``.
        ci_low: Lower end of the 95 % Student-t interval of the mean (NaN for ``n < 2``).
        ci_high: Upper end of it.
        p_value: Two-sided sign-flip permutation p-value (NaN for ``n = 0``).
        delta: Equivalence margin, stated before looking at the data.
        verdict: ``holds``, ``opposite``, ``equivalent`` or ``inconclusive``.
        tost_low: Lower end of the 90 % t-interval used for equivalence (TOST at 5 %).
        tost_high: Upper end of it.
        within_margin: ``(tost_low, tost_high)`` lies inside ``(-delta, delta)``; can be True
            alongside ``holds``/``opposite`` (a resolved difference smaller than the margin).
        permutation: ``"exact"`` (all ``2^n`` sign patterns) or ``"monte_carlo"``.
        num_permutations: Sign patterns evaluated.
        seed: Seed of the Monte-Carlo patterns (None when exact).
        adjusted_p: The family-wise adjusted p-value the verdict used (NaN: none, ``p_value``
            decided).
        family_size: Metrics in the family (1: none); the TOST interval is at ``1 - 2 alpha / m``.
    """

    claim: str
    evidence: str
    candidate_is: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    delta: float
    verdict: str
    tost_low: float
    tost_high: float
    within_margin: bool
    permutation: str
    num_permutations: int
    seed: int | None
    adjusted_p: float = math.nan
    family_size: int = 1


def paired_differences(
    baseline: Sequence[float] | Mapping[object, float],
    candidate: Sequence[float] | Mapping[object, float],
) -> list[float]:
    """``candidate_s - baseline_s`` per seed, dropping pairs where either value is NaN.

    Args:
        baseline: Values per seed (e.g. SDT), a sequence aligned with ``candidate`` or a
            seed -> value mapping (paired on the seeds both have, in sorted order).
        candidate: Values per seed (e.g. TET).

    Raises:
        ValueError: If two sequences differ in length.
    """
    if isinstance(baseline, Mapping) and isinstance(candidate, Mapping):
        seeds = sorted(set(baseline) & set(candidate), key=repr)
        pairs = [(float(baseline[s]), float(candidate[s])) for s in seeds]
    else:
        if len(baseline) != len(candidate):
            raise ValueError(
                f"paired values need one value per seed on both sides, got {len(baseline)} "
                f"baseline and {len(candidate)} candidate values"
            )
        pairs = [(float(b), float(c)) for b, c in zip(baseline, candidate)]
    return [c - b for b, c in pairs if b == b and c == c]


def t_interval(differences: Sequence[float], level: float) -> tuple[float, float]:
    """Student-t confidence interval of the mean, ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)``.

    Returns ``(nan, nan)`` for fewer than two values.
    """
    n = len(differences)
    if n < 2:
        return float("nan"), float("nan")
    mean, var, _ = _mean_var(differences)
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * math.sqrt(var / n)
    return mean - half, mean + half


def sign_flip_p_value(
    differences: Sequence[float], num_resamples: int = 100_000, seed: int = 0
) -> tuple[float, str, int]:
    """Two-sided sign-flip permutation p-value of ``mean(d) = 0``.

    Under H0 the sign of each paired difference is exchangeable. The p-value is the share of sign
    patterns ``e`` whose ``|sum e_i d_i|`` is at least the observed ``|sum d_i|`` (to a relative
    ``1e-9`` of ``sum |d_i|``, so float rounding cannot split ties). For ``n <= 20`` all ``2^n``
    patterns are enumerated (the observed one included); above, ``num_resamples`` random patterns
    from ``numpy.random.default_rng(seed)`` give ``(1 + hits) / (1 + num_resamples)``.

    Returns:
        ``(p_value, "exact" | "monte_carlo", num_patterns)``; ``p = nan`` for no differences.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = d.size
    if n == 0:
        return float("nan"), "exact", 0
    observed = abs(float(d.sum())) - 1e-9 * float(np.abs(d).sum())
    if n <= EXACT_MAX_N:
        sums = np.zeros(1)
        for value in d:
            sums = np.concatenate([sums + value, sums - value])
        return float(np.mean(np.abs(sums) >= observed)), "exact", int(sums.size)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, num_resamples, 10_000):
        size = min(10_000, num_resamples - start)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed))
    return (1 + hits) / (1 + num_resamples), "monte_carlo", num_resamples


def _paired_decision(candidate_is: str, ci: tuple[float, float], p_value: float) -> str | None:
    low, high = ci
    if not p_value < ALPHA or low != low:
        return None
    if high < 0:
        return PAIRED_HOLDS if candidate_is == "lower" else PAIRED_OPPOSITE
    if low > 0:
        return PAIRED_HOLDS if candidate_is == "higher" else PAIRED_OPPOSITE
    return None


def compare_paired(
    claim: str,
    evidence: str,
    baseline: Sequence[float] | Mapping[object, float],
    candidate: Sequence[float] | Mapping[object, float],
    candidate_is: str,
    delta: float,
    num_resamples: int = 100_000,
    seed: int = 0,
    adjusted_p: float | None = None,
    family_size: int = 1,
) -> PairedVerdict:
    """Decide a claim about ``candidate - baseline`` from seed-paired values by :data:`PAIRED_RULE`.

    Args:
        claim: The claim, e.g. ``"TET finds lower lambda_max"``.
        evidence: The metric.
        baseline: Values per seed (SDT); see :func:`paired_differences`.
        candidate: Values per seed (TET).
        candidate_is: Claimed direction of candidate - baseline: ``"lower"`` or ``"higher"``.
        delta: Equivalence margin in the metric's units (> 0), stated before the data.
        num_resamples: Monte-Carlo sign patterns when ``n > 20``.
        seed: Seed of those patterns (recorded in the result).
        adjusted_p: The metric's family-wise adjusted p-value (:func:`westfall_young`), which
            then decides in place of its own sign-flip p-value.
        family_size: The number of metrics in its family: equivalence needs the
            ``1 - 2 alpha / family_size`` interval inside the margin (Bonferroni over the family).

    Raises:
        ValueError: On a bad direction, a non-positive ``delta``, a family size below 1 or
            unpaired sequences.
    """
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    if candidate_is not in ("lower", "higher"):
        raise ValueError(f"candidate_is must be 'lower' or 'higher', got {candidate_is!r}")
    if not delta > 0:
        raise ValueError(f"the equivalence margin delta must be > 0, got {delta}")
    d = paired_differences(baseline, candidate)
    mean = math.fsum(d) / len(d) if d else float("nan")
    ci, tost = t_interval(d, 1 - ALPHA), t_interval(d, 1 - 2 * ALPHA / family_size)
    p_value, method, count = sign_flip_p_value(d, num_resamples, seed)
    within = bool(-delta < tost[0] and tost[1] < delta)  # False when NaN
    deciding = p_value if adjusted_p is None else adjusted_p
    verdict = _paired_decision(candidate_is, ci, deciding)
    if verdict is None:
        verdict = PAIRED_EQUIVALENT if within else PAIRED_INCONCLUSIVE
    return PairedVerdict(
        claim,
        evidence,
        candidate_is,
        len(d),
        mean,
        ci[0],
        ci[1],
        p_value,
        float(delta),
        verdict,
        tost[0],
        tost[1],
        within,
        method,
        count,
        seed if method == "monte_carlo" else None,
        math.nan if adjusted_p is None else float(adjusted_p),
        family_size,
    )


# --- Several metrics: Westfall & Young's max-T over the joint sign-flip distribution ---

MULTIPLICITY_METHODS = ("step_down_max_t", "single_step_max_t", "step_down_min_p")
_TIE = 1e-9  # relative tolerance (of sum |d|) that float rounding cannot split ties across


@dataclass(frozen=True)
class AdjustedPValues:
    """The outcome of :func:`westfall_young`.

    Attributes:
        metrics: The metrics, in the order given.
        n: metric -> complete pairs (its NaN pairs dropped).
        t: metric -> observed ``|t| = |mean(d)| / (sd(d) / sqrt(n))``; ``inf`` for constant non-zero
            differences, NaN for ``n < 2`` or all differences zero.
        raw: metric -> two-sided sign-flip p-value of its own ``|t|`` (unadjusted; the same as
            :func:`sign_flip_p_value` of its differences when enumerated exactly, or drawn from
            the same seed with no pair missing); NaN where ``t`` is NaN.
        adjusted: metric -> family-wise adjusted p-value; NaN where ``t`` is NaN.
        order: The step-down order of the metrics with a statistic: observed ``|t|`` descending
            (max-T) or raw p ascending (min-P); ties keep the given order (min-P: ``|t|`` order).
        method: One of :data:`MULTIPLICITY_METHODS`.
        permutation: ``"exact"`` (all ``2^num_pairs`` sign patterns) or ``"monte_carlo"``.
        num_permutations: Sign patterns evaluated (the observed one included when exact).
        num_pairs: Pairs with a value for at least one metric (each carries one shared sign).
        seed: Seed of the Monte-Carlo patterns (None when exact).
    """

    metrics: tuple[str, ...]
    n: dict[str, int]
    t: dict[str, float]
    raw: dict[str, float]
    adjusted: dict[str, float]
    order: tuple[str, ...]
    method: str
    permutation: str
    num_permutations: int
    num_pairs: int
    seed: int | None


def _difference_matrix(
    differences: Mapping[str, Sequence[float] | Mapping[object, float]],
) -> tuple[tuple[str, ...], np.ndarray]:
    """``(metrics, D)`` with ``D[pair, metric]`` (NaN where missing), pairs all-NaN dropped."""
    names = tuple(str(name) for name in differences)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"need at least one metric, each named once, got {list(names)}")
    columns = list(differences.values())
    mappings = [isinstance(column, Mapping) for column in columns]
    if all(mappings):
        pairs = sorted(set().union(*columns), key=repr)
        rows = [[float(column.get(pair, math.nan)) for column in columns] for pair in pairs]
        matrix = np.array(rows, dtype=np.float64).reshape(len(pairs), len(columns))
    elif not any(mappings):
        arrays = [np.asarray(column, dtype=np.float64) for column in columns]
        lengths = {array.shape for array in arrays}
        if len(lengths) != 1 or arrays[0].ndim != 1:
            raise ValueError(
                "sequences of differences must be 1-D and aligned (one value per pair, NaN where "
                f"missing), got shapes {dict(zip(names, (array.shape for array in arrays)))}"
            )
        matrix = np.stack(arrays, axis=1)
    else:
        raise ValueError(
            "give every metric as a sequence (aligned by pair) or every one as a "
            "pair -> difference mapping, not a mix"
        )
    return names, matrix[~np.all(np.isnan(matrix), axis=1)]


def _paired_t(d: np.ndarray) -> float:
    """``|mean| / (sd / sqrt(n))``: inf for constant non-zero values, NaN for n < 2 or all zero."""
    if d.size < 2 or not np.any(d):
        return float("nan")
    mean, var, n = _mean_var(d.tolist())
    return math.inf if var == 0 else abs(mean) / math.sqrt(var / n)


def _sign_patterns(n: int, num_resamples: int, seed: int):
    """Chunks of sign patterns ``[size, n]`` and the weight of each: all ``2^n`` (each pattern
    with ``e_0 = +1`` stands for itself and its mirror ``-e``, whose ``|t|`` is the same), or
    ``num_resamples`` random ones drawn as :func:`sign_flip_p_value` draws them."""
    if n <= EXACT_MAX_N:
        bits = np.arange(n - 1, dtype=np.int64)
        for start in range(0, 2 ** (n - 1), 2**16):
            index = np.arange(start, min(start + 2**16, 2 ** (n - 1)), dtype=np.int64)
            signs = np.ones((index.size, n))
            signs[:, 1:] -= 2 * ((index[:, None] >> bits) & 1)
            yield signs, 2
        return
    rng = np.random.default_rng(seed)
    for start in range(0, num_resamples, 10_000):
        size = min(10_000, num_resamples - start)
        yield (rng.integers(0, 2, size=(size, n)) * 2 - 1).astype(np.float64), 1


def _p_values(hits: np.ndarray, total: int, exact: bool) -> np.ndarray:
    """Share of patterns that hit: ``hits / total`` exact, ``(1 + hits) / (1 + total)`` else."""
    return hits / total if exact else (1 + hits) / (1 + total)


def _max_t_hits(d, counts, t_sorted, patterns, exact: bool, step_down: bool):
    """Raw and max-T p-values (before monotonicity) of the metrics in ``d``'s column order, which
    is by observed ``|t|`` descending."""
    n_k, sum_sq = counts.astype(np.float64), np.sum(d * d, axis=0)
    # threshold[a, b]: |sum_i e_i d_ia| at which metric a's t equals t_b, from
    # t^2 = (n - 1) s^2 / (n S2 - s^2)  <=>  s^2 = n S2 / (1 + (n - 1) / t^2)  (inf: s^2 = n S2)
    with np.errstate(divide="ignore"):
        ratio = np.where(t_sorted > 0, (n_k[:, None] - 1) / t_sorted[None, :] ** 2, np.inf)
    threshold = np.sqrt(n_k * sum_sq)[:, None] / np.sqrt(1 + ratio)
    np.fill_diagonal(threshold, np.abs(np.sum(d, axis=0)))
    threshold -= _TIE * np.sum(np.abs(d), axis=0)[:, None]
    size = d.shape[1]
    # metric a competes in column b's maximum: ranked at or below b (step-down), or always
    competes = np.tril(np.ones((size, size), bool)) if step_down else np.ones((size, size), bool)
    raw_hits, max_hits, total = np.zeros(size), np.zeros(size), 0
    for signs, weight in patterns:
        sums = np.abs(signs @ d)  # [pattern, metric]
        raw_hits += weight * np.sum(sums >= np.diag(threshold), axis=0)
        beyond = (sums[:, :, None] >= threshold[None, :, :]) & competes  # [pattern, a, b]
        max_hits += weight * np.sum(np.any(beyond, axis=1), axis=0)
        total += weight * signs.shape[0]
    return _p_values(raw_hits, total, exact), _p_values(max_hits, total, exact)


def _min_p_hits(d, patterns, exact: bool):
    """Raw and step-down min-P p-values (before monotonicity), in the order of the returned
    ``rank`` (indices into ``d``'s columns, by raw p ascending, ties kept in column order)."""
    sums = np.concatenate([np.abs(signs @ d) for signs, _ in patterns])  # exact: e_0 = +1 half
    if not exact:  # the observed pattern joins the reference set: p = (1 + hits) / (1 + B)
        sums = np.concatenate([np.abs(np.sum(d, axis=0))[None, :], sums])
    size, rows = d.shape[1], sums.shape[0]
    # count[e, k]: patterns whose |sum| for metric k reaches pattern e's (p_k(e) = count / rows)
    count = np.empty(sums.shape, dtype=np.int64)
    for k in range(size):
        floor = sums[:, k] - _TIE * np.sum(np.abs(d[:, k]))
        count[:, k] = rows - np.searchsorted(np.sort(sums[:, k]), floor, side="left")
    observed = count[0]  # row 0 is the observed pattern (all +1)
    rank = np.argsort(observed, kind="stable")
    count, observed = count[:, rank], observed[rank]
    successive_min = np.minimum.accumulate(count[:, ::-1], axis=1)[:, ::-1]
    hits = np.sum(successive_min <= observed, axis=0)
    return observed / rows, hits / rows, rank


def westfall_young(
    differences: Mapping[str, Sequence[float] | Mapping[object, float]],
    num_resamples: int = 100_000,
    seed: int = 0,
    method: str = "step_down_max_t",
) -> AdjustedPValues:
    """Family-wise adjusted sign-flip p-values for several paired metrics (Westfall & Young 1993).

    Each metric's statistic is the paired Student ``|t| = |mean(d)| / (sd(d) / sqrt(n))`` over its
    complete pairs. The null distribution is the *joint* sign-flip distribution: under H0 (no
    metric differs) the sign of each pair's difference vector is exchangeable, so one sign ``e_i``
    flips pair ``i`` in every metric at once. Sharing the signs keeps the metrics' correlation
    (seed ``i``'s SDT and TET runs enter every metric of that pair), so metrics that move together
    are penalized little: identical metrics get their raw p-value back, while independent ones
    come close to Holm's adjustment. Flipping each metric's signs independently would throw that
    dependence away and adjust as if the metrics were independent.

    The statistic is ``t`` and not the raw mean because the metrics have different units and
    spreads (an eigenvalue, a trace, an accuracy): the maximum over metrics of ``|mean|`` would be
    decided by whichever metric has the largest numbers. ``t`` is unit-free (``d`` and ``c d``
    give the same ``t``), and for one metric it orders the sign patterns exactly as ``|mean|``
    does (``sum d_i^2`` does not change under sign flips), so each raw p-value equals
    :func:`sign_flip_p_value` of that metric.

    ``"step_down_max_t"`` (Westfall & Young 1993, Algorithm 4.1, pp. 116-117): order the metrics
    by observed ``|t|``, ``t_(1) >= ... >= t_(M)``; ``p~_(j) = P(max_{k >= j} |t*_(k)| >= t_(j))``
    over the sign patterns, the maximum running over the metrics not ranked above ``j``; the
    adjusted p-value is ``max_{i <= j} p~_(i)`` (monotone in the order of ``|t|``).
    ``"single_step_max_t"`` takes the maximum over every metric for each ``j``. Both are at least
    the raw p-value.

    Caveat of max-T: it treats the metrics' ``|t|`` as on one scale, but a sign-flip ``t`` is not
    pivotal. Its permutation distribution depends on the profile of ``|d_i|`` and on ``n`` (NaN
    pairs), and its far tail can be much heavier for one metric than another (``|d_i|`` nearly
    equal allow a huge ``t*``), which then dominates the maximum. With few pairs max-T can
    therefore come out *above* Holm's bound on the raw p-values (both control the family-wise
    error; neither is uniformly better). ``"step_down_min_p"`` (their Algorithm 2.8, pp. 66-67:
    the same on p-values, ordered by raw p ascending, ``p~_(j) = P(min_{k >= j} p*_(k) <= p_(j))``
    with ``p*_k`` the sign-flip p-value a pattern would give metric ``k``) puts every metric on
    the p scale and is never above Holm; it keeps every pattern's sums in memory.

    Patterns: for at most 20 pairs, all ``2^n`` (the observed included; the smallest attainable
    p-value is ``2 / 2^n``); above, ``num_resamples`` random patterns from
    ``numpy.random.default_rng(seed)`` give ``(1 + hits) / (1 + num_resamples)`` (min-P: a
    pattern's p-values are its ranks among these and the observed pattern, as in Ge, Dudoit &
    Speed 2003). A max-T comparison ``|t*_k| >= t_j`` is made on ``|sum_i e_i d_ik|`` against the
    value at which metric ``k``'s ``t`` equals ``t_j``, less ``1e-9 sum |d_k|`` (as
    :func:`sign_flip_p_value` does), so float rounding cannot split ties. Time: max-T
    ``O(patterns * M * (n + M))``, min-P ``O(patterns * M * (n + log patterns))``.

    Args:
        differences: metric -> per-pair differences ``candidate - baseline``: every metric a
            sequence aligned by pair (NaN where a pair lacks the metric) or every metric a
            pair -> difference mapping (e.g. ``{seed: tet[seed] - sdt[seed]}``; pairs are matched
            by key, a missing key is a missing value). A pair missing from a metric only drops
            out of that metric's ``t``.
        num_resamples: Monte-Carlo sign patterns when more than 20 pairs.
        seed: Seed of those patterns (recorded in the result).
        method: One of :data:`MULTIPLICITY_METHODS`.

    Returns:
        :class:`AdjustedPValues`; ``result.adjusted`` and ``result.raw`` map metric -> p-value.
        A metric with fewer than two pairs or all differences zero has ``t``, raw and adjusted
        NaN and takes no part in the other metrics' adjustment.

    Raises:
        ValueError: On an unknown method, no metrics, or misaligned sequences.
    """
    if method not in MULTIPLICITY_METHODS:
        raise ValueError(f"method must be one of {MULTIPLICITY_METHODS}, got {method!r}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    names, matrix = _difference_matrix(differences)
    present = ~np.isnan(matrix)
    counts = present.sum(axis=0)
    stats_t = [_paired_t(matrix[present[:, k], k]) for k in range(len(names))]
    order = sorted((k for k, t in enumerate(stats_t) if t == t), key=lambda k: -stats_t[k])
    num_pairs = matrix.shape[0]
    exact = num_pairs <= EXACT_MAX_N
    raw_p, adjusted_p = [math.nan] * len(names), [math.nan] * len(names)
    if order:
        d = np.where(present, matrix, 0.0)[:, order]  # [pair, metric by |t| rank]
        patterns = _sign_patterns(num_pairs, num_resamples, seed)
        if method == "step_down_min_p":
            raw_sorted, tilde, rank = _min_p_hits(d, patterns, exact)
            order = [order[r] for r in rank]
        else:
            t_sorted = np.array([stats_t[k] for k in order])
            step_down = method == "step_down_max_t"
            raw_sorted, tilde = _max_t_hits(d, counts[order], t_sorted, patterns, exact, step_down)
        adjusted_sorted = np.maximum.accumulate(tilde)
        for position, k in enumerate(order):
            raw_p[k], adjusted_p[k] = float(raw_sorted[position]), float(adjusted_sorted[position])
    return AdjustedPValues(
        metrics=names,
        n={name: int(counts[k]) for k, name in enumerate(names)},
        t={name: float(stats_t[k]) for k, name in enumerate(names)},
        raw=dict(zip(names, raw_p)),
        adjusted=dict(zip(names, adjusted_p)),
        order=tuple(names[k] for k in order),
        method=method,
        permutation="exact" if exact else "monte_carlo",
        num_permutations=2**num_pairs if exact else int(num_resamples),
        num_pairs=int(num_pairs),
        seed=None if exact else seed,
    )

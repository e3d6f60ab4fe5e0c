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
    "otherwise inconclusive"
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

    Raises:
        ValueError: On a bad direction, a non-positive ``delta`` or unpaired sequences.
    """
    if candidate_is not in ("lower", "higher"):
        raise ValueError(f"candidate_is must be 'lower' or 'higher', got {candidate_is!r}")
    if not delta > 0:
        raise ValueError(f"the equivalence margin delta must be > 0, got {delta}")
    d = paired_differences(baseline, candidate)
    mean = math.fsum(d) / len(d) if d else float("nan")
    ci, tost = t_interval(d, 1 - ALPHA), t_interval(d, 1 - 2 * ALPHA)
    p_value, method, count = sign_flip_p_value(d, num_resamples, seed)
    within = bool(-delta < tost[0] and tost[1] < delta)  # False when NaN
    verdict = _paired_decision(candidate_is, ci, p_value)
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
    )

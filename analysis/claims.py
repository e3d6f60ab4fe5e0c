"""The paper's claims, decided from measured numbers by one stated rule.

Rule: a claim that TET's value is lower (or higher) than SDT's (or, generally, a candidate's than
a baseline's) *holds* when the difference of the
means points the claimed way by more than two standard errors of that difference
(``se = sqrt(s_sdt^2 / n_sdt + s_tet^2 / n_tet)``, sample standard deviations over seeds); it
*does not hold* when it points the other way by more than two standard errors; otherwise, or with
fewer than two values per side, it is *inconclusive at this scale*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Verdict", "compare_means", "check_all", "RULE"]

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
    return Verdict(claim, f"{evidence} ({len(values) - failures}/{len(values)} runs)",
                   float(failures), 0.0, verdict)  # fmt: skip

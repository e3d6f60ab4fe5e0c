"""Does a measure predict generalization over a population of runs? Kendall's tau, granulated too.

Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic generalization measures and where to find
them" (ICLR 2020), Sec. 4-5: train a grid of models over hyper-parameter axes, then rank-correlate
each measure with the generalization gap (test error - train error, i.e. train accuracy - test
accuracy).

- :func:`kendall_tau`: Kendall's tau-b (ties corrected, as ``scipy.stats.kendalltau``) over all
  pairs of runs, ``tau_b = (n_c - n_d) / sqrt((n_0 - n_1) (n_0 - n_2))`` with ``n_0 = n (n-1) / 2``
  pairs and ``n_1``, ``n_2`` the pairs tied in the measure and in the gap.
- :func:`granulated_kendall_tau`: for each axis ``i``, the runs are grouped so that every group
  shares the values of all other columns (the other axes and, e.g., the seed): its runs differ only
  in axis ``i``. ``psi_i`` is the mean of the groups' tau; the granulated tau ``Psi`` is the mean
  of ``psi_i`` over the axes. A group with fewer than two runs, or whose tau is undefined (every
  measure or every gap tied), is skipped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "kendall_tau",
    "kendall_p_value",
    "GranulatedTau",
    "granulated_kendall_tau",
    "kendall_table",
]


def kendall_tau(measure: Sequence[float], gap: Sequence[float]) -> float:
    """Kendall's tau-b between a measure and the generalization gap over runs.

    Runs where either value is NaN are dropped. O(n^2) memory, fine for thousands of runs.

    Args:
        measure: One value per run.
        gap: One value per run, aligned with ``measure``.

    Returns:
        tau-b in ``[-1, 1]``; NaN with fewer than two runs or when either side is all tied.

    Raises:
        ValueError: If the two sequences differ in length.

    Example:
        >>> kendall_tau([1, 2, 3], [0.1, 0.3, 0.2])
        0.3333333333333333
    """
    x, y = np.asarray(measure, dtype=np.float64), np.asarray(gap, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"measure and gap must be 1-D and aligned, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    upper = np.triu_indices(x.size, k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    untied_x, untied_y = np.count_nonzero(sx), np.count_nonzero(sy)
    if untied_x == 0 or untied_y == 0:
        return float("nan")
    return float(np.sum(sx * sy) / math.sqrt(untied_x * untied_y))


@dataclass
class GranulatedTau:
    """Result of :func:`granulated_kendall_tau`.

    Attributes:
        overall: tau-b over all pairs of runs.
        psi: Granulated tau, the mean of ``per_axis`` (NaN if any axis has no usable group).
        per_axis: axis -> ``psi_i``, the mean tau over the groups that differ only in that axis.
        num_groups: axis -> groups averaged.
        num_skipped: axis -> groups skipped (fewer than two runs, or tau undefined).
        num_runs: Runs used.
    """

    overall: float
    psi: float
    per_axis: dict[str, float] = field(default_factory=dict)
    num_groups: dict[str, int] = field(default_factory=dict)
    num_skipped: dict[str, int] = field(default_factory=dict)
    num_runs: int = 0


def kendall_p_value(measure: Sequence[float], gap: Sequence[float]) -> float:
    """Two-sided p-value of tau-b = 0 (``scipy.stats.kendalltau``: exact for small untied samples,
    else the normal approximation); NaN where tau is undefined. Runs are not independent draws
    from one distribution (they share a grid), so read it as a scale, not a test."""
    from scipy.stats import kendalltau

    return float(kendalltau(np.asarray(measure, float), np.asarray(gap, float)).pvalue)


def _columns(hyperparameters: Mapping[str, Sequence], n: int) -> dict[str, list]:
    columns = {str(name): list(hyperparameters[name]) for name in hyperparameters}
    wrong = {name: len(values) for name, values in columns.items() if len(values) != n}
    if wrong:
        raise ValueError(f"every hyper-parameter column needs {n} values (one per run): {wrong}")
    return columns


def granulated_kendall_tau(
    measure: Sequence[float],
    gap: Sequence[float],
    hyperparameters: Mapping[str, Sequence],
    axes: Sequence[str] | None = None,
) -> GranulatedTau:
    """Jiang et al.'s granulated Kendall tau of a measure against the generalization gap.

    Args:
        measure: One value per run.
        gap: Generalization gap per run.
        hyperparameters: column name -> one value per run (a ``pandas.DataFrame`` works). Columns
            not in ``axes`` (e.g. ``seed``) only define the groups: runs in a group share them.
        axes: The hyper-parameter axes (default: every column).

    Returns:
        :class:`GranulatedTau`.

    Raises:
        ValueError: On misaligned inputs, no axes, or an axis that is not a column.
    """
    n = len(measure)
    if len(gap) != n:
        raise ValueError(f"measure and gap must be aligned, got {n} and {len(gap)} values")
    columns = _columns(hyperparameters, n)
    axes = list(columns) if axes is None else [str(axis) for axis in axes]
    unknown = sorted(set(axes) - set(columns))
    if unknown or not axes:
        raise ValueError(f"axes must be a non-empty subset of {list(columns)}, got {axes}")
    values, gaps = np.asarray(measure, np.float64), np.asarray(gap, np.float64)
    result = GranulatedTau(overall=kendall_tau(values, gaps), psi=float("nan"), num_runs=n)
    for axis in axes:
        others = [name for name in columns if name != axis]
        groups: dict[tuple, list[int]] = {}
        for run in range(n):
            groups.setdefault(tuple(columns[name][run] for name in others), []).append(run)
        taus = [kendall_tau(values[runs], gaps[runs]) for runs in groups.values() if len(runs) > 1]
        taus = [tau for tau in taus if tau == tau]
        result.per_axis[axis] = float(np.mean(taus)) if taus else float("nan")
        result.num_groups[axis], result.num_skipped[axis] = len(taus), len(groups) - len(taus)
    result.psi = float(np.mean(list(result.per_axis.values())))
    return result


def kendall_table(
    measures: Mapping[str, Sequence[float]],
    gap: Sequence[float],
    hyperparameters: Mapping[str, Sequence],
    axes: Sequence[str] | None = None,
) -> dict[str, GranulatedTau]:
    """:func:`granulated_kendall_tau` for every measure (name -> values per run)."""
    return {
        name: granulated_kendall_tau(values, gap, hyperparameters, axes)
        for name, values in measures.items()
    }

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
- :func:`permutation_null`: permutation p-values of tau, ``Psi`` and every ``psi_i`` against the
  null "the gap is not associated with the measure": the gap is permuted across all runs (those
  where both values are known) and every quantity recomputed, ``(1 + hits) / (1 + B)``
  two-sided. It rests on the gaps being exchangeable across runs under the null (not on runs
  being independent draws, as :func:`kendall_p_value`'s reference distribution does) and gives
  ``Psi`` and ``psi_i`` a null at all.
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
    "PermutedTaus",
    "permuted_taus",
    "PermutationNull",
    "permutation_null",
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


# --- Permutation nulls: the gap shuffled across runs, every tau recomputed ---

_TAU_TIE = 1e-9  # absolute: tau-like values lie in [-1, 1]


@dataclass(frozen=True)
class PermutedTaus:
    """tau, ``Psi`` and ``psi_i`` for each of ``B`` permutations of the gap (:func:`permuted_taus`).

    Attributes:
        overall: ``[B]`` tau-b over all pairs of runs.
        psi: ``[B]`` granulated tau (NaN where an axis has no usable group).
        per_axis: axis -> ``[B]`` ``psi_i``.
        num_groups: axis -> ``[B]`` groups averaged (tau defined).
        num_skipped: axis -> ``[B]`` groups skipped (fewer than two runs with both values, or tau
            undefined).
    """

    overall: np.ndarray
    psi: np.ndarray
    per_axis: dict[str, np.ndarray]
    num_groups: dict[str, np.ndarray]
    num_skipped: dict[str, np.ndarray]


def _signs(values: np.ndarray) -> np.ndarray:
    """``sign(v_a - v_b)`` for every ordered pair, as int8."""
    return np.sign(values[:, None] - values[None, :]).astype(np.int8)


class _Taus:
    """Precomputed pairs and groups: tau, ``psi_i`` and ``Psi`` for many permutations at once.

    Works on the ``m`` complete runs (measure and gap both known); a permutation ``pi`` of them
    gives complete run ``a`` the gap of complete run ``pi[a]``, so the gap's pair signs are
    ``G[pi[a], pi[b]]`` for the fixed sign matrix ``G``, and tau-b's denominators over all runs stay
    fixed (permuting the gap keeps its ties). Within a group they change with the permutation.
    """

    def __init__(self, measure, gap, columns: dict[str, list], axes: list[str]):
        self.complete = np.flatnonzero(~(np.isnan(measure) | np.isnan(gap)))
        self.size = self.complete.size
        x, y = measure[self.complete], gap[self.complete]
        sx, self.gap_signs = _signs(x), _signs(y).ravel()
        self.a, self.b = np.triu_indices(self.size, k=1)
        self.sx = sx[self.a, self.b]
        untied = np.count_nonzero(self.sx) * np.count_nonzero(
            self.gap_signs[self.a * self.size + self.b]
        )
        self.overall_scale = math.sqrt(untied) if untied else 0.0
        position = np.full(measure.size, -1)
        position[self.complete] = np.arange(self.size)
        self.axes = axes
        self.groups = {}
        for axis in axes:
            others = [name for name in columns if name != axis]
            groups: dict[tuple, list[int]] = {}
            for run in range(measure.size):
                groups.setdefault(tuple(columns[name][run] for name in others), []).append(run)
            pairs_a, pairs_b, starts, untied_x, offset = [], [], [], [], 0
            for runs in groups.values():
                members = position[runs]
                members = members[members >= 0]
                ga, gb = np.triu_indices(members.size, k=1)
                ux = np.count_nonzero(sx[members[ga], members[gb]])
                if ux:  # >= 2 complete runs, measure not all tied: usable unless the gap is
                    pairs_a.append(members[ga])
                    pairs_b.append(members[gb])
                    starts.append(offset)
                    untied_x.append(ux)
                    offset += ga.size
            entry = None
            if pairs_a:
                qa, qb = np.concatenate(pairs_a), np.concatenate(pairs_b)
                entry = (qa, qb, sx[qa, qb], np.array(starts), np.array(untied_x, np.float64))
            self.groups[axis] = (entry, len(groups))

    def __call__(self, permutations: np.ndarray) -> PermutedTaus:
        """Statistics for ``permutations`` ``[B, m]`` of the complete runs."""
        count = permutations.shape[0]
        overall = np.full(count, np.nan)
        per_axis = {axis: np.full(count, np.nan) for axis in self.axes}
        used = {axis: np.zeros(count, np.int64) for axis in self.axes}
        chunk = max(1, 2**22 // max(1, self.a.size))
        for start in range(0, count, chunk):
            pi = permutations[start : start + chunk]
            rows = slice(start, start + pi.shape[0])
            if self.overall_scale:
                sy = self.gap_signs[pi[:, self.a] * self.size + pi[:, self.b]]
                overall[rows] = np.sum(sy * self.sx, axis=1, dtype=np.int64) / self.overall_scale
            for axis in self.axes:
                entry, _ = self.groups[axis]
                if entry is None:
                    continue
                qa, qb, sx, starts, untied_x = entry
                sy = self.gap_signs[pi[:, qa] * self.size + pi[:, qb]]
                concordance = np.add.reduceat(sy * sx, starts, axis=1, dtype=np.int64)
                untied_y = np.add.reduceat(sy != 0, starts, axis=1, dtype=np.int64)
                usable = untied_y > 0
                with np.errstate(divide="ignore", invalid="ignore"):
                    taus = np.where(usable, concordance / np.sqrt(untied_x * untied_y), 0.0)
                used[axis][rows] = np.sum(usable, axis=1)
                with np.errstate(invalid="ignore"):
                    per_axis[axis][rows] = np.sum(taus, axis=1) / used[axis][rows]
        psi = np.mean(np.stack([per_axis[axis] for axis in self.axes]), axis=0)
        skipped = {axis: self.groups[axis][1] - used[axis] for axis in self.axes}
        return PermutedTaus(overall, psi, per_axis, used, skipped)


def _prepare(measure, gap, hyperparameters, axes) -> tuple[np.ndarray, np.ndarray, _Taus]:
    n = len(measure)
    if len(gap) != n:
        raise ValueError(f"measure and gap must be aligned, got {n} and {len(gap)} values")
    columns = _columns(hyperparameters, n)
    axes = list(columns) if axes is None else [str(axis) for axis in axes]
    unknown = sorted(set(axes) - set(columns))
    if unknown or not axes:
        raise ValueError(f"axes must be a non-empty subset of {list(columns)}, got {axes}")
    values, gaps = np.asarray(measure, np.float64), np.asarray(gap, np.float64)
    return values, gaps, _Taus(values, gaps, columns, axes)


def permuted_taus(
    measure: Sequence[float],
    gap: Sequence[float],
    hyperparameters: Mapping[str, Sequence],
    axes: Sequence[str] | None,
    permutations: np.ndarray,
) -> PermutedTaus:
    """tau, ``Psi`` and ``psi_i`` with the gap permuted: run ``r`` gets the gap of run
    ``permutations[j, r]`` in permutation ``j``.

    Args:
        measure, gap, hyperparameters, axes: As for :func:`granulated_kendall_tau`.
        permutations: ``[B, n]`` integer array, each row a permutation of the runs that moves only
            runs where both the measure and the gap are known (NaN runs stay in place). The
            identity gives :func:`granulated_kendall_tau`'s values.

    Raises:
        ValueError: On misaligned inputs, bad axes, or rows that are not such permutations.
    """
    values, gaps, taus = _prepare(measure, gap, hyperparameters, axes)
    permutations = np.asarray(permutations)
    shape_ok = permutations.ndim == 2 and permutations.shape[1] == values.size
    if not shape_ok or not np.issubdtype(permutations.dtype, np.integer):
        raise ValueError(
            f"permutations must be integers [B, {values.size}], got {permutations.dtype} "
            f"{permutations.shape}"
        )
    if permutations.size and (permutations.min() < 0 or permutations.max() >= values.size):
        raise ValueError(f"permutations must hold run indices 0..{values.size - 1}")
    position = np.full(values.size, -1)
    position[taus.complete] = np.arange(taus.size)
    inner = position[permutations[:, taus.complete]] if permutations.size else permutations
    rest = np.setdiff1d(np.arange(values.size), taus.complete)
    valid = np.all(np.sort(inner, axis=1) == np.arange(taus.size), axis=1)
    if not (np.all(valid) and np.all(permutations[:, rest] == rest)):
        raise ValueError("each row must permute only the runs with both measure and gap known")
    return taus(inner)


@dataclass(frozen=True)
class PermutationNull:
    """Result of :func:`permutation_null`. The observed values are computed as the permuted ones
    (the identity permutation); they equal :func:`granulated_kendall_tau`'s, the means to
    rounding.

    Attributes:
        overall: Observed tau-b.
        psi: Observed granulated tau.
        per_axis: axis -> observed ``psi_i``.
        num_groups: axis -> groups averaged in the observed ``psi_i``.
        num_skipped: axis -> groups skipped in it.
        p_overall: Two-sided permutation p-value of tau, ``(1 + #{|tau*| >= |tau|}) / (1 + B)``.
        p_psi: The same for ``Psi``.
        p_per_axis: axis -> the same for ``psi_i``.
        num_runs: Runs given.
        num_permuted: Runs whose gaps were permuted (measure and gap both known).
        num_permutations: ``B``.
        seed: Seed of ``numpy.random.default_rng`` that drew the permutations.
    """

    overall: float
    psi: float
    per_axis: dict[str, float]
    num_groups: dict[str, int]
    num_skipped: dict[str, int]
    p_overall: float
    p_psi: float
    p_per_axis: dict[str, float]
    num_runs: int
    num_permuted: int
    num_permutations: int
    seed: int


def _two_sided(null: np.ndarray, observed: float) -> float:
    """``(1 + hits) / (1 + B)``, a hit being ``|null| >= |observed|``; a NaN null value (e.g. every
    group's gap tied) is no hit; NaN if the observed value is NaN."""
    if observed != observed:
        return float("nan")
    with np.errstate(invalid="ignore"):
        hits = int(np.sum(np.abs(null) >= abs(observed) - _TAU_TIE))
    return (1 + hits) / (1 + null.size)


def permutation_null(
    measure: Sequence[float],
    gap: Sequence[float],
    hyperparameters: Mapping[str, Sequence],
    axes: Sequence[str] | None = None,
    num_permutations: int = 2000,
    seed: int = 0,
) -> PermutationNull:
    """Permutation p-values of Kendall's tau, the granulated ``Psi`` and each ``psi_i``.

    Null hypothesis: the gap is exchangeable across runs, i.e. not associated with the measure
    nor, through the grid, with the hyper-parameters. The gap is permuted across all runs whose
    measure and gap are both known (runs with a NaN stay out, as in :func:`kendall_tau`), the
    groups stay those of the hyper-parameters, and tau, every ``psi_i`` and ``Psi`` are recomputed
    for each of ``num_permutations`` permutations from ``numpy.random.default_rng(seed)``.

    Permuting across all runs is not permuting within the groups granulation uses, but for one
    axis it comes to the same null when the gap has no ties: a uniformly random assignment gives
    the runs of disjoint groups independent, uniformly random orders, which is all a group's tau
    sees. ``Psi`` averages axes whose groups overlap, and only the joint permutation gives it a
    null. The grid is not a random sample: the p-values test this permutation null, not a
    population of training setups.

    Args:
        measure, gap, hyperparameters, axes: As for :func:`granulated_kendall_tau`.
        num_permutations: ``B`` (>= 1).
        seed: Seed of the permutations (the same seed gives every measure the same permutations).

    Returns:
        :class:`PermutationNull`.

    Raises:
        ValueError: As :func:`granulated_kendall_tau`, or on ``num_permutations < 1``.
    """
    if num_permutations < 1:
        raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
    values, gaps, taus = _prepare(measure, gap, hyperparameters, axes)
    observed = taus(np.arange(taus.size)[None, :])
    rng = np.random.default_rng(seed)
    permutations = rng.permuted(np.tile(np.arange(taus.size), (num_permutations, 1)), axis=1)
    null = taus(permutations)
    return PermutationNull(
        overall=float(observed.overall[0]),
        psi=float(observed.psi[0]),
        per_axis={axis: float(v[0]) for axis, v in observed.per_axis.items()},
        num_groups={axis: int(v[0]) for axis, v in observed.num_groups.items()},
        num_skipped={axis: int(v[0]) for axis, v in observed.num_skipped.items()},
        p_overall=_two_sided(null.overall, float(observed.overall[0])),
        p_psi=_two_sided(null.psi, float(observed.psi[0])),
        p_per_axis={
            axis: _two_sided(null.per_axis[axis], float(observed.per_axis[axis][0]))
            for axis in taus.axes
        },
        num_runs=int(values.size),
        num_permuted=int(taus.size),
        num_permutations=int(num_permutations),
        seed=seed,
    )

"""Sharpness of a minimum: epsilon-sharpness, random-perturbation increase, surface statistics.

- :func:`epsilon_sharpness`: Keskar et al., "On Large-Batch Training for Deep Learning:
  Generalization Gap and Sharp Minima" (ICLR 2017), Eq. 3 with ``A = I``:
  ``phi = 100 * (max_{y in C} L(x + y) - L(x)) / (1 + L(x))`` over the box
  ``C = {y : |y_i| <= eps (|x_i| + 1)}``. Keskar et al. maximise with L-BFGS-B; here a few projected
  sign-gradient ascent steps follow the objective's gradient (the surrogate gradient for an SNN),
  and the largest *true* loss seen is reported, so the value is a lower bound of the maximum.
- :func:`perturbation_sharpness`: mean, spread and standard error over random draws ``d_k`` of
  ``L(x + r d_k) - L(x)`` (filter-normalized directions: Li et al. 2018; the "expected
  sharpness" of Neyshabur et al. 2017 with a fixed radius).
- :func:`quadratic_curvature`, :func:`basin_width`, :func:`flat_step_fraction`: statistics of a
  computed 1-D or 2-D surface (curvature of a least-squares quadratic at the centre, width of the
  sub-level set around the centre, share of exactly flat grid steps, the SNN staircase).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from landscape.objective import Objective
from landscape.surface import SurfaceEvaluator

__all__ = [
    "EpsilonSharpness",
    "epsilon_sharpness",
    "PerturbationSharpness",
    "perturbation_sharpness",
    "quadratic_curvature",
    "basin_width",
    "flat_step_fraction",
    "surface_statistics",
]


@dataclass
class EpsilonSharpness:
    """Result of :func:`epsilon_sharpness`.

    Attributes:
        epsilon: Box radius relative to ``|x_i| + 1``.
        value: ``100 * (loss_max - loss_centre) / (1 + loss_centre)`` (a lower bound).
        loss_centre: ``L(x)``.
        loss_max: Largest loss seen in the box.
        losses: Loss after each ascent step, ``[num_steps]``.
        num_gradients: Gradient evaluations used.
    """

    epsilon: float
    value: float
    loss_centre: float
    loss_max: float
    losses: list[float]
    num_gradients: int


def epsilon_sharpness(
    objective: Objective,
    epsilon: float,
    num_steps: int = 10,
    step_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> EpsilonSharpness:
    """Keskar et al. (2017) epsilon-sharpness by projected sign-gradient ascent in the box.

    Args:
        objective: Loss over fixed batches; the centre ``x`` is ``objective.params``.
        epsilon: Relative box radius (Keskar et al. use 1e-3 and 5e-4).
        num_steps: Ascent steps (each one gradient and one loss evaluation).
        step_fraction: Step as a fraction of the box half-width per coordinate.
        generator: If given, start from a uniform random point of the box instead of ``x``.

    Returns:
        :class:`EpsilonSharpness`.

    Raises:
        ValueError: On a non-positive ``epsilon``, ``num_steps`` or ``step_fraction``.
    """
    if not (epsilon > 0 and num_steps >= 1 and step_fraction > 0):
        raise ValueError(
            f"epsilon, num_steps and step_fraction must be > 0, got {epsilon}, {num_steps}, "
            f"{step_fraction}"
        )
    x = objective.params
    bound = epsilon * (x.abs() + 1)  # [P]
    y = torch.zeros_like(x)
    if generator is not None:
        uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        y = (2 * uniform - 1) * bound
    loss_centre = float(objective.loss(x))
    best, losses = float(objective.loss(x + y)), []
    for _ in range(num_steps):
        y = y + step_fraction * bound * objective.grad(x + y).sign()
        y = torch.maximum(torch.minimum(y, bound), -bound)
        losses.append(float(objective.loss(x + y)))
        best = max(best, losses[-1])
    return EpsilonSharpness(
        epsilon=float(epsilon),
        value=100.0 * (best - loss_centre) / (1.0 + loss_centre),
        loss_centre=loss_centre,
        loss_max=best,
        losses=losses,
        num_gradients=num_steps,
    )


@dataclass
class PerturbationSharpness:
    """Loss increase under random perturbations of one radius, for one metric.

    Attributes:
        radius: Coordinate ``r`` along each (normalized) direction.
        centre: Metric at the centre.
        mean: Mean increase over the draws.
        std: Standard deviation over the draws (ddof 1; NaN for one draw).
        stderr: ``std / sqrt(num_draws)``.
        increases: ``[num_draws]`` increase per draw.
    """

    radius: float
    centre: float
    mean: float
    std: float
    stderr: float
    increases: list[float]


def perturbation_sharpness(
    evaluator: SurfaceEvaluator, radii: Sequence[float]
) -> dict[str, list[PerturbationSharpness]]:
    """Metric increases at ``x + r d_k`` for every radius ``r`` and every direction ``d_k``.

    Args:
        evaluator: Built with the ``K`` random draws as its directions (e.g. filter-normalized
            :func:`landscape.directions.random_direction` with ``K`` seeds).
        radii: Radii ``r`` in direction units (``r = 1``: the size of the weights, filter-wise).

    Returns:
        metric name -> one :class:`PerturbationSharpness` per radius.

    Raises:
        ValueError: If ``radii`` is empty.
    """
    if not radii:
        raise ValueError("radii must not be empty")
    K, R = evaluator.dim, len(radii)
    coords = torch.zeros(1 + R * K, K, dtype=torch.float64)
    for i, r in enumerate(radii):
        coords[1 + i * K : 1 + (i + 1) * K] = float(r) * torch.eye(K, dtype=torch.float64)
    values = evaluator.evaluate(coords)
    results: dict[str, list[PerturbationSharpness]] = {}
    for name, value in values.items():
        increases = (value[1:] - value[0]).view(R, K)  # [R, K]
        std = increases.std(1) if K > 1 else torch.full((R,), float("nan"), dtype=torch.float64)
        results[name] = [
            PerturbationSharpness(
                float(r),
                float(value[0]),
                float(row.mean()),
                float(s),
                float(s) / K**0.5,
                row.tolist(),
            )
            for r, row, s in zip(radii, increases, std)
        ]
    return results


def _centre_index(axis: np.ndarray) -> int:
    return int(np.argmin(np.abs(np.asarray(axis))))


def quadratic_curvature(
    axes: Sequence[np.ndarray], values: np.ndarray, radius: float | None = None
) -> dict[str, float]:
    """Least-squares quadratic ``c + g.x + x^T K x / 2`` around the origin of a 1-D/2-D surface.

    Args:
        axes: ``[nx]`` (and ``[ny]``) coordinates.
        values: Surface values, shape ``(nx,)`` or ``(nx, ny)``.
        radius: Fit points with every ``|coordinate| <= radius`` (default: a quarter of the
            largest axis half-range, and at least the 3 points nearest the origin on each axis).

    Returns:
        1-D: ``curvature`` (``K``), ``slope``, ``value``, ``rms_residual``, ``num_points``.
        2-D: also ``curvature_xx``, ``curvature_yy``, ``curvature_xy``, ``curvature_min`` and
        ``curvature_max`` (eigenvalues of ``K``); ``curvature`` is ``trace(K) / 2``.

    Raises:
        ValueError: If fewer points than coefficients are in the fit window.
    """
    axes = [np.asarray(axis, dtype=np.float64) for axis in axes]
    mesh = [m.reshape(-1) for m in np.meshgrid(*axes, indexing="ij")]
    if radius is None:
        spans = [max(np.sort(np.abs(a))[min(2, len(a) - 1)], np.ptp(a) / 8) for a in axes]
        radius = max(spans)
    inside = np.all([np.abs(m) <= radius + 1e-12 for m in mesh], axis=0)
    x = [m[inside] for m in mesh]
    columns = [np.ones_like(x[0]), *x, *(0.5 * xi**2 for xi in x)]
    if len(axes) == 2:
        columns.append(x[0] * x[1])
    design, target = np.stack(columns, 1), np.asarray(values, np.float64).reshape(-1)[inside]
    if len(target) < design.shape[1]:
        raise ValueError(f"only {len(target)} points within radius {radius}; widen it")
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    rms = float(np.sqrt(np.mean((design @ coef - target) ** 2)))
    result = {"value": float(coef[0]), "rms_residual": rms, "num_points": int(len(target))}
    if len(axes) == 1:
        return {**result, "slope": float(coef[1]), "curvature": float(coef[2])}
    hessian = np.array([[coef[3], coef[5]], [coef[5], coef[4]]])
    low, high = np.linalg.eigvalsh(hessian)
    return {
        **result,
        "curvature": float(np.trace(hessian) / 2),
        "curvature_xx": float(coef[3]),
        "curvature_yy": float(coef[4]),
        "curvature_xy": float(coef[5]),
        "curvature_min": float(low),
        "curvature_max": float(high),
    }


def basin_width(axis: np.ndarray, values: np.ndarray, threshold: float) -> dict[str, float]:
    """Width of the interval around the origin where ``values <= values[origin] + threshold``.

    Crossings are interpolated linearly between grid points. When the set reaches an end of the
    grid, the width is a lower bound and ``censored`` is 1.

    Args:
        axis: ``[n]`` coordinates (must contain or straddle 0).
        values: ``[n]`` surface values.
        threshold: Allowed increase over the value at the origin.

    Returns:
        ``width``, ``left``, ``right`` (coordinates of the crossings) and ``censored`` (0 or 1).

    Example:
        >>> axis = np.linspace(-1, 1, 9)
        >>> basin_width(axis, axis**2, threshold=0.25)["width"]
        1.0
    """
    axis, values = np.asarray(axis, np.float64), np.asarray(values, np.float64)
    centre = _centre_index(axis)
    level = values[centre] + threshold
    ends, censored = [], 0
    for step in (-1, 1):
        i = centre
        while 0 <= i + step < len(axis) and values[i + step] <= level:
            i += step
        if not 0 <= i + step < len(axis):
            ends.append(axis[i])
            censored = 1
            continue
        v0, v1 = values[i], values[i + step]
        fraction = (level - v0) / (v1 - v0) if v1 != v0 else 0.0
        ends.append(axis[i] + fraction * (axis[i + step] - axis[i]))
    return {
        "width": float(ends[1] - ends[0]),
        "left": float(ends[0]),
        "right": float(ends[1]),
        "censored": censored,
    }


def flat_step_fraction(values: np.ndarray | Tensor) -> float:
    """Share of neighbouring grid steps (along every axis) where the value is exactly unchanged.

    A spiking network's true loss is piecewise constant, so at a fine enough grid this tends to 1.

    Example:
        >>> flat_step_fraction(np.array([0.5, 0.5, 0.7, 0.7, 0.7]))
        0.75
    """
    values = np.asarray(values)
    steps = [np.diff(values, axis=dim).reshape(-1) for dim in range(values.ndim)]
    steps = np.concatenate(steps) if steps else np.zeros(0)
    return float(np.mean(steps == 0)) if steps.size else float("nan")


def surface_statistics(
    axes: Sequence[np.ndarray], values: np.ndarray, threshold: float
) -> dict[str, float]:
    """Quadratic fit, basin width along each axis through the origin, and share of flat steps.

    Args:
        axes: ``[nx]`` (and ``[ny]``) coordinates.
        values: ``(nx,)`` or ``(nx, ny)`` surface of one metric.
        threshold: Loss increase bounding the basin (see :func:`basin_width`).

    Returns:
        name -> value: the keys of :func:`quadratic_curvature`, ``flat_step_fraction`` and
        ``basin_<key>_<x|y>`` for the keys of :func:`basin_width`.
    """
    values = np.asarray(values, np.float64)
    stats = {**quadratic_curvature(axes, values), "flat_step_fraction": flat_step_fraction(values)}
    centre = tuple(_centre_index(axis) for axis in axes)
    for axis, label in zip(range(values.ndim), "xy"):
        index = list(centre)
        index[axis] = slice(None)
        for key, value in basin_width(axes[axis], values[tuple(index)], threshold).items():
            stats[f"basin_{key}_{label}"] = value
    return stats

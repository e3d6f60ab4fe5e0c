"""Adaptive sharpness: the loss increase in a ball measured in units of the weights themselves.

Kwon, Kim, Park & Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning
of Deep Neural Networks" (ICML 2021); Andriushchenko, Croce, Mueller, Hein & Flammarion, "A Modern
Look at the Relationship between Sharpness and Generalization" (ICML 2023). With the elementwise
scale ``T_w = diag(|w| + eta)`` (``eta = 0`` here by default, which keeps the exact invariance):

- worst case (:func:`adaptive_worst_case`):
  ``S_max(w, rho) = max_{||T_w^{-1} delta||_p <= rho} L(w + delta) - L(w)``, ``p`` in ``{2, inf}``;
- average (:func:`adaptive_average`):
  ``S_avg(w, rho) = E_{delta ~ N(0, rho^2 T_w^2)} L(w + delta) - L(w)``.

Both are computed in the normalized coordinates ``u = T_w^{-1} delta``, so scaling a layer that
feeds a BatchNorm by ``c`` (which scales ``w`` there by ``c`` and the gradient by ``1 / c``) leaves
every iterate of ``u``, and hence the value, unchanged. The worst case is found by projected
gradient ascent on ``u`` with a fixed step ``step_fraction * rho`` (normalized-gradient steps for
``p = 2``, sign steps for ``p = inf``; Andriushchenko et al. use Auto-PGD step sizes instead). It
follows the objective's gradient (the surrogate gradient for an SNN) and reports the largest *true*
loss seen, so the value is a lower bound of the maximum. The model is never mutated: every point
is evaluated through the :class:`~landscape.objective.Objective` (functional parameters), as in
:mod:`landscape.sharpness`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from landscape.normalized import weight_scale
from landscape.objective import Objective

__all__ = ["AdaptiveWorstCase", "adaptive_worst_case", "AdaptiveAverage", "adaptive_average"]

NORMS = (2, math.inf)


@dataclass
class AdaptiveWorstCase:
    """Result of :func:`adaptive_worst_case`.

    Attributes:
        rho: Radius of the ball ``||T_w^{-1} delta||_p <= rho``.
        p: ``2`` or ``inf``.
        eta: Added to ``|w|`` in ``T_w``.
        num_steps: Ascent steps.
        step_fraction: Step length as a fraction of ``rho``.
        seed: Seed of the random start (``None``: started at ``delta = 0``).
        value: ``loss_max - loss_centre`` (a lower bound of the maximum).
        loss_centre: ``L(w)``.
        loss_max: Largest loss seen (the centre included).
        losses: Loss after each step, ``[num_steps]``.
        radius_reached: ``||T_w^{-1} delta||_p`` of the last iterate.
        num_gradients: Gradient evaluations used.
    """

    rho: float
    p: float
    eta: float
    num_steps: int
    step_fraction: float
    seed: int | None
    value: float
    loss_centre: float
    loss_max: float
    losses: list[float]
    radius_reached: float
    num_gradients: int


def _check(rho: float, p: float, eta: float) -> None:
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    if p not in NORMS:
        raise ValueError(f"p must be 2 or inf (math.inf), got {p}")
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")


def _project(u: Tensor, rho: float, p: float) -> Tensor:
    if p == 2:
        norm = u.norm()
        return u * (rho / norm) if norm > rho else u
    return u.clamp(-rho, rho)


def _start(like: Tensor, rho: float, p: float, generator: torch.Generator | None) -> Tensor:
    """``u = 0``, or a random point on the sphere (``p = 2``) or in the box (``p = inf``)."""
    if generator is None:
        return torch.zeros_like(like)
    if p == 2:
        u = torch.randn(like.shape, generator=generator, dtype=torch.float64)
        u = u * (rho / u.norm())
    else:
        u = (2 * torch.rand(like.shape, generator=generator, dtype=torch.float64) - 1) * rho
    return u.to(like.device, like.dtype)


def _ascent_step(grad: Tensor, scale: Tensor, u: Tensor, step: float, rho: float, p: float):
    """One projected ascent step on ``u`` with ``g_u = T_w grad L``."""
    g_u = scale * grad
    if p == 2:
        norm = g_u.norm()
        u = u + step * g_u / norm if norm > 0 else u
    else:
        u = u + step * g_u.sign()
    return _project(u, rho, p)


def adaptive_worst_case(
    objective: Objective,
    rho: float,
    p: float = 2,
    num_steps: int = 10,
    step_fraction: float = 0.25,
    eta: float = 0.0,
    params: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AdaptiveWorstCase:
    """Worst-case adaptive sharpness by projected gradient ascent in normalized coordinates.

    Each step: ``g_u = T_w grad L(w + T_w u)``; ``u += step_fraction * rho * g_u / ||g_u||_2``
    (``p = 2``) or ``u += step_fraction * rho * sign(g_u)`` (``p = inf``); then ``u`` is projected
    onto ``||u||_p <= rho``.

    Args:
        objective: Loss over fixed batches.
        rho: Radius in units of ``|w|`` (e.g. 0.05 for ``p = 2`` on a small net; it is stated in the
            result).
        p: ``2`` or ``math.inf``.
        num_steps: Ascent steps (each one gradient and one loss evaluation).
        step_fraction: Step length as a fraction of ``rho``.
        eta: Added to ``|w|`` (``0`` keeps the invariance exact).
        params: Centre ``w`` ``[P]`` (default: ``objective.params``).
        generator: If given, start from a random point of the sphere (``p = 2``) or box
            (``p = inf``); its ``initial_seed()`` is recorded.

    Returns:
        :class:`AdaptiveWorstCase`.

    Raises:
        ValueError: On a non-positive ``rho``, ``num_steps`` or ``step_fraction``, or another ``p``.
    """
    _check(rho, p, eta)
    if not (num_steps >= 1 and step_fraction > 0):
        raise ValueError(
            f"num_steps and step_fraction must be > 0, got {num_steps}, {step_fraction}"
        )
    scale = weight_scale(objective, params, eta)
    w = objective.params if params is None else params.detach().to(scale.device, scale.dtype)
    u = _start(scale, rho, p, generator)
    loss_centre = float(objective.loss(w))
    best, losses = max(loss_centre, float(objective.loss(w + scale * u))), []
    for _ in range(num_steps):
        u = _ascent_step(objective.grad(w + scale * u), scale, u, step_fraction * rho, rho, p)
        losses.append(float(objective.loss(w + scale * u)))
        best = max(best, losses[-1])
    return AdaptiveWorstCase(
        rho=float(rho),
        p=float(p),
        eta=float(eta),
        num_steps=num_steps,
        step_fraction=float(step_fraction),
        seed=None if generator is None else int(generator.initial_seed()),
        value=best - loss_centre,
        loss_centre=loss_centre,
        loss_max=best,
        losses=losses,
        radius_reached=float(u.norm(p=p)),
        num_gradients=num_steps,
    )


@dataclass
class AdaptiveAverage:
    """Result of :func:`adaptive_average`.

    Attributes:
        rho: ``delta ~ N(0, rho^2 T_w^2)``.
        eta: Added to ``|w|`` in ``T_w``.
        num_samples: Draws of ``delta``.
        seed: ``initial_seed()`` of the generator (``None`` if none was given).
        value: Mean loss increase over the draws.
        std: Standard deviation of the increases (ddof 1; NaN for one draw).
        stderr: ``std / sqrt(num_samples)``.
        loss_centre: ``L(w)``.
        increases: ``[num_samples]`` loss increase per draw.
    """

    rho: float
    eta: float
    num_samples: int
    seed: int | None
    value: float
    std: float
    stderr: float
    loss_centre: float
    increases: list[float]


def adaptive_average(
    objective: Objective,
    rho: float,
    num_samples: int = 32,
    eta: float = 0.0,
    params: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> AdaptiveAverage:
    """Average adaptive sharpness ``E L(w + rho T_w z) - L(w)``, ``z ~ N(0, I)``, by Monte Carlo.

    The draws ``z`` are float64 on the CPU from ``generator``, so the same seed gives the same
    draws on any device and for any two networks with the same number of parameters.

    Args:
        objective: Loss over fixed batches.
        rho: Standard deviation in units of ``|w|`` (stated in the result).
        num_samples: Draws (one loss evaluation each).
        eta: Added to ``|w|``.
        params: Centre ``w`` ``[P]`` (default: ``objective.params``).
        generator: CPU generator.

    Returns:
        :class:`AdaptiveAverage` with the mean, spread and standard error over the draws.

    Raises:
        ValueError: On a non-positive ``rho`` or ``num_samples``.
    """
    _check(rho, 2, eta)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    scale = weight_scale(objective, params, eta)
    w = objective.params if params is None else params.detach().to(scale.device, scale.dtype)
    loss_centre = float(objective.loss(w))
    increases = []
    for _ in range(num_samples):
        z = torch.randn(scale.shape, generator=generator, dtype=torch.float64)
        delta = rho * scale * z.to(scale.device, scale.dtype)
        increases.append(float(objective.loss(w + delta)) - loss_centre)
    values = torch.tensor(increases, dtype=torch.float64)
    std = float(values.std()) if num_samples > 1 else float("nan")
    return AdaptiveAverage(
        rho=float(rho),
        eta=float(eta),
        num_samples=num_samples,
        seed=None if generator is None else int(generator.initial_seed()),
        value=float(values.mean()),
        std=std,
        stderr=std / math.sqrt(num_samples),
        loss_centre=loss_centre,
        increases=increases,
    )

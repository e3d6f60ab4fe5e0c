"""Adaptive sharpness: the loss increase in a ball measured in units of the weights themselves.

Kwon, Kim, Park & Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning
of Deep Neural Networks" (ICML 2021); Andriushchenko, Croce, Mueller, Hein & Flammarion, "A Modern
Look at the Relationship between Sharpness and Generalization" (ICML 2023). With the elementwise
scale ``T_w = diag(|w| + eta)`` (``eta = 0`` here by default, which keeps the exact invariance):

- worst case (:func:`adaptive_worst_case`, fixed steps; :func:`apgd_worst_case`, Auto-PGD):
  ``S_max(w, rho) = max_{||T_w^{-1} delta||_p <= rho} L(w + delta) - L(w)``, ``p`` in ``{2, inf}``;
- average (:func:`adaptive_average`):
  ``S_avg(w, rho) = E_{delta ~ N(0, rho^2 T_w^2)} L(w + delta) - L(w)``.

Both are computed in the normalized coordinates ``u = T_w^{-1} delta``, so scaling a layer that
feeds a BatchNorm by ``c`` (which scales ``w`` there by ``c`` and the gradient by ``1 / c``) leaves
every iterate of ``u``, and hence the value, unchanged. The worst case is found by projected
gradient ascent on ``u`` with a fixed step ``step_fraction * rho`` (normalized-gradient steps for
``p = 2``, sign steps for ``p = inf``) or, as Andriushchenko et al. do, by Auto-PGD (Croce & Hein,
"Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks",
ICML 2020: momentum 0.75, the step halved at checkpoints where the ascent stalled, restarts from the
best point, several random starts). Both follow the objective's gradient (the surrogate gradient
for an SNN) and report the largest *true* loss seen, so the value is a lower bound of the maximum.
:func:`first_order_term` is the ascent's linear part ``max_{||u||_p <= rho} <T_w grad L, u>``,
which a worst case at a point that is not a minimum of ``L`` contains. The model is never
mutated: every point is evaluated through the :class:`~landscape.objective.Objective`
(functional parameters), as in :mod:`landscape.sharpness`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from landscape.normalized import weight_scale
from landscape.objective import Objective

__all__ = [
    "AdaptiveAverage",
    "AdaptiveWorstCase",
    "adaptive_average",
    "adaptive_worst_case",
    "apgd_checkpoints",
    "apgd_worst_case",
    "first_order_term",
]

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
        num_restarts: Random starts (Auto-PGD; 1 for fixed steps).
        restart_values: The value each start reached (their spread says how far the lower bound
            is from tight).
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
    num_restarts: int = 1
    restart_values: list[float] = field(default_factory=list)


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


def _direction(g_u: Tensor, p: float) -> Tensor:
    """The steepest-ascent direction of unit ``p``-norm step size: normalized or sign."""
    if p == 2:
        norm = g_u.norm()
        return g_u / norm if norm > 0 else torch.zeros_like(g_u)
    return g_u.sign()


def _ascent_step(grad: Tensor, scale: Tensor, u: Tensor, step: float, rho: float, p: float):
    """One projected ascent step on ``u`` with ``g_u = T_w grad L``."""
    return _project(u + step * _direction(scale * grad, p), rho, p)


def first_order_term(
    objective: Objective, rho: float, p: float = 2, eta: float = 0.0, params: Tensor | None = None
) -> float:
    """``max_{||u||_p <= rho} <T_w grad L(w), u>``: ``rho ||T_w grad L||_q`` with ``1/p + 1/q = 1``.

    The increase a worst-case ascent finds to first order; at a minimum of ``L`` it vanishes and
    the worst case measures curvature, elsewhere (e.g. L_TET at an SDT minimum) it is part of the
    value. Costs one gradient.
    """
    _check(rho, p, eta)
    scale = weight_scale(objective, params, eta)
    w = objective.params if params is None else params.detach().to(scale.device, scale.dtype)
    g_u = scale * objective.grad(w)
    return float(rho * (g_u.abs().sum() if p == math.inf else g_u.norm()))


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


def apgd_checkpoints(num_steps: int) -> list[int]:
    """The iterations at which Auto-PGD checks its progress (Croce & Hein 2020, Sec. 3.2):
    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, times the
    number of steps, rounded up."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    return sorted({math.ceil(f * num_steps) for f in fractions if 0 < f * num_steps <= num_steps})


def _apgd_run(objective, w, scale, u, rho, p, num_steps, momentum, step) -> tuple:
    """One Auto-PGD ascent from ``u``: ``(best value of L, losses per step)``."""
    loss = float(objective.loss(w + scale * u))
    best_u, best, losses = u, loss, []
    previous, checkpoints, last = u, apgd_checkpoints(num_steps), 0
    successes, step_at_last, best_at_last = 0, step, best
    for k in range(num_steps):
        grad = objective.grad(w + scale * u)
        z = _project(u + step * _direction(scale * grad, p), rho, p)
        weight = 1.0 if k == 0 else momentum
        u, previous = _project(u + weight * (z - u) + (1 - weight) * (u - previous), rho, p), u
        new = float(objective.loss(w + scale * u))
        successes += new > loss
        loss = new
        losses.append(new)
        if new > best:
            best_u, best = u, new
        if k + 1 in checkpoints:
            stalled = successes < 0.75 * (k + 1 - last)
            unchanged = step == step_at_last and best == best_at_last
            if stalled or unchanged:
                step, u, previous = step / 2, best_u, best_u
            successes, last, step_at_last, best_at_last = 0, k + 1, step, best
    return best, losses


def apgd_worst_case(
    objective: Objective,
    rho: float,
    p: float = math.inf,
    num_steps: int = 20,
    num_restarts: int = 3,
    eta: float = 0.0,
    params: Tensor | None = None,
    generator: torch.Generator | None = None,
    momentum: float = 0.75,
    initial_step: float = 2.0,
) -> AdaptiveWorstCase:
    """Worst-case adaptive sharpness by Auto-PGD (Croce & Hein 2020) in normalized coordinates,
    as Andriushchenko et al. (2023) compute it.

    From each of ``num_restarts`` random starts in the ball (drawn from ``generator``): the step
    starts at ``initial_step * rho``; each iterate moves to ``z = P(u + step * d(T_w grad L))``
    with momentum, ``u <- P(u + momentum (z - u) + (1 - momentum)(u - u_prev))``; at the
    checkpoints of :func:`apgd_checkpoints` the step is halved, and the ascent restarted from the
    best point, when fewer than 75 % of the steps since the last checkpoint raised the loss or
    neither the step nor the best loss changed. The value is the largest loss over all starts
    minus ``L(w)`` (a lower bound of the maximum); ``restart_values`` keeps each start's.

    Args:
        objective: Loss over fixed batches.
        rho: Radius in units of ``|w|``.
        p: ``2`` or ``math.inf``.
        num_steps: Ascent steps per start (each one gradient and one loss evaluation).
        num_restarts: Random starts.
        eta: Added to ``|w|``.
        params: Centre ``w`` ``[P]`` (default: ``objective.params``).
        generator: CPU generator of the starts (None: the first start at ``u = 0``, then random
            starts from a generator seeded 0).
        momentum: Auto-PGD's ``alpha``.
        initial_step: First step as a multiple of ``rho``.

    Raises:
        ValueError: On a bad ``rho``, ``p``, ``eta``, ``num_steps`` or ``num_restarts``.
    """
    _check(rho, p, eta)
    if num_steps < 1 or num_restarts < 1:
        raise ValueError(
            f"num_steps and num_restarts must be >= 1, got {num_steps}, {num_restarts}"
        )
    scale = weight_scale(objective, params, eta)
    w = objective.params if params is None else params.detach().to(scale.device, scale.dtype)
    loss_centre = float(objective.loss(w))
    starts = generator if generator is not None else torch.Generator().manual_seed(0)
    values, all_losses = [], []
    for restart in range(num_restarts):
        use_zero = generator is None and restart == 0
        u = torch.zeros_like(scale) if use_zero else _start(scale, rho, p, starts)
        best, losses = _apgd_run(
            objective, w, scale, u, rho, p, num_steps, momentum, initial_step * rho
        )
        values.append(max(best, loss_centre) - loss_centre)
        all_losses += losses
    return AdaptiveWorstCase(
        rho=float(rho),
        p=float(p),
        eta=float(eta),
        num_steps=num_steps,
        step_fraction=float(initial_step),
        seed=None if generator is None else int(generator.initial_seed()),
        value=max(values),
        loss_centre=loss_centre,
        loss_max=loss_centre + max(values),
        losses=all_losses,
        radius_reached=float("nan"),
        num_gradients=num_steps * num_restarts,
        num_restarts=num_restarts,
        restart_values=values,
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

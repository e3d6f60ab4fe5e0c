"""Sharpness of one loss at a checkpoint: how much the loss rises when the weights move.

- ``epsilon_sharpness`` (Keskar et al. 2017): the largest increase found in the box
  ``|y_i| <= eps (|x_i| + 1)`` by projected sign-gradient ascent from a random start, as
  ``100 (L_max - L) / (1 + L)``;
- ``adaptive_worst`` (Kwon et al. 2021; Andriushchenko et al. 2023): the largest increase found
  in ``||delta / |w| ||_p <= rho`` by projected gradient ascent;
- ``adaptive_average``: the mean increase over ``delta ~ N(0, rho^2 diag(|w|)^2)``, with its
  standard error;
- ``random_perturbation`` (a table, Li et al. 2018): the increase of L_SDT, L_TET and the change
  of accuracy at radius r along random filter-normalized directions, mean, std and stderr.

For an SNN the ascents follow the surrogate gradient, so the worst cases are lower bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from analysis.measures.inputs import EvalInput, Evaluation, LossObjective, PointMetrics
from analysis.measures.registry import (
    CheckpointMeasure,
    Estimate,
    LossMeasure,
    MeasureResult,
    register,
)
from landscape import api
from landscape.adaptive import adaptive_average, apgd_worst_case, first_order_term
from landscape.sharpness import epsilon_sharpness, perturbation_sharpness
from toolkit.settings import check, option, same_as
from training.snn.spikes import spike_counter

__all__ = [
    "AdaptiveAverageSettings",
    "AdaptiveWorstSettings",
    "EpsilonSettings",
    "PERTURBATION_COLUMNS",
    "PerturbationSettings",
]


@dataclass(frozen=True)
class EpsilonSettings:
    """Keskar et al.'s box and the ascent in it."""

    epsilon: float = option(
        1e-3, "epsilon-sharpness box radius relative to |w| + 1 (Keskar)", above=0.0
    )
    epsilon_steps: int = option(10, "projected sign-ascent steps of epsilon-sharpness", minimum=1)
    ascent_step_fraction: float = option(
        0.25, "ascent step as a fraction of the radius", above=0.0, maximum=1.0
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class AdaptiveWorstSettings:
    """The ball of the adaptive worst case and the ascent in it."""

    adaptive_p: float = option(
        math.inf,
        "norm of the adaptive worst-case ball: 2 or inf",
        choices=(2.0, math.inf),
        finite=False,
    )
    adaptive_rho: float = option(
        0.01,
        "adaptive worst-case radius in units of |w| (with p = inf: every weight moves <= 1 %)",
        above=0.0,
    )
    adaptive_sweep: tuple[float, ...] = option(
        (0.005, 0.02),
        "further radii of the adaptive worst case (rows adaptive_worst@<radius>), to see whether "
        "an ordering holds at every radius; none: no sweep",
        above=0.0,
        empty=True,
    )
    adaptive_steps: int = option(20, "Auto-PGD steps of the adaptive worst case", minimum=1)
    adaptive_restarts: int = option(
        3,
        "random starts of the adaptive worst case at the main radius (the best is kept)",
        minimum=1,
    )
    adaptive_sweep_restarts: int = option(
        1, "random starts of the adaptive worst case at the radii of the sweep", minimum=1
    )
    eta: float = option(0.0, "added to |w| in the normalized and adaptive measures", minimum=0.0)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class AdaptiveAverageSettings:
    """The Gaussian of the adaptive average."""

    average_rho: float = option(0.05, "adaptive average: delta ~ N(0, rho^2 diag(|w|)^2)", above=0)
    average_samples: int = option(16, "draws of the adaptive average", minimum=2)
    eta: float = same_as(AdaptiveWorstSettings, "eta")

    def __post_init__(self) -> None:
        check(self)


def epsilon(loss: LossObjective, settings: EpsilonSettings, generator) -> Estimate:
    """Keskar et al.'s epsilon-sharpness (percent), with its first-order part
    ``100 eps sum_i (|x_i| + 1) |g_i| / (1 + L)`` (the box's linear maximum)."""
    objective = loss.objective
    found = epsilon_sharpness(
        objective,
        settings.epsilon,
        settings.epsilon_steps,
        settings.ascent_step_fraction,
        generator,
    )
    x = objective.params
    linear = settings.epsilon * float(((x.abs() + 1) * objective.grad(x).abs()).sum())
    first_order = 100.0 * linear / (1.0 + found.loss_centre)
    evaluations = 2 * found.num_gradients + 1
    return Estimate(found.value, num_evaluations=evaluations, first_order=first_order)


def adaptive_worst(loss: LossObjective, settings: AdaptiveWorstSettings, generator) -> list:
    """Worst-case adaptive sharpness by Auto-PGD at the main radius and at every radius of the
    sweep (lower bounds: the ascent may not find the maximum), each with its first-order part;
    every radius starts from the same seeded draws."""
    s, estimates = settings, []
    state = generator.get_state() if generator is not None else None
    for radius in (s.adaptive_rho, *s.adaptive_sweep):
        if state is not None:
            generator.set_state(state)
        restarts = s.adaptive_restarts if radius == s.adaptive_rho else s.adaptive_sweep_restarts
        found = apgd_worst_case(
            loss.objective,
            radius,
            s.adaptive_p,
            s.adaptive_steps,
            restarts,
            s.eta,
            generator=generator,
        )
        term = first_order_term(loss.objective, radius, s.adaptive_p, s.eta)
        name = None if radius == s.adaptive_rho else f"adaptive_worst@{radius:g}"
        evaluations = 2 * found.num_gradients + 1
        estimates.append(
            Estimate(found.value, math.nan, True, evaluations, name, radius, first_order=term)
        )
    return estimates


def adaptive_mean(loss: LossObjective, settings: AdaptiveAverageSettings, generator) -> Estimate:
    """Average adaptive sharpness and its Monte-Carlo standard error."""
    found = adaptive_average(
        loss.objective,
        settings.average_rho,
        settings.average_samples,
        settings.eta,
        generator=generator,
    )
    return Estimate(found.value, found.stderr, True, found.num_samples)


@dataclass(frozen=True)
class PerturbationSettings:
    """Random filter-normalized perturbations (biases and BN do not move)."""

    radius: tuple[float, ...] = option(
        (0.05, 0.1, 0.25, 0.5), "radii of the random perturbations, in filter units", above=0.0
    )
    draws: int = option(8, "random directions per radius", minimum=1)

    def __post_init__(self) -> None:
        check(self)


PERTURBATION_COLUMNS = (
    "checkpoint",
    "method",
    "measure",
    "metric",
    "parameter",
    "value",
    "std",
    "stderr",
    "n",
)


def random_perturbation(
    input: EvalInput, settings: PerturbationSettings, evaluation: Evaluation
) -> MeasureResult:
    """Mean increase of every point metric at each radius over ``draws`` random directions
    (drawn from ``evaluation.seed``)."""
    generator = torch.Generator().manual_seed(evaluation.seed)
    directions = [
        api.directions("random", input.model, dim=1, generator=generator).directions[0]
        for _ in range(settings.draws)
    ]
    evaluator = api.surface_evaluator(
        input.model,
        directions,
        input.batches,
        PointMetrics.of(input.config),
        observer=spike_counter,
        dtype=evaluation.dtype,
        device=evaluation.device,
    )
    head = {
        "checkpoint": str(input.checkpoint.path),
        "method": input.config.method,
        "measure": "random_perturbation",
    }
    rows = [
        {
            **head,
            "metric": metric,
            "parameter": r.radius,
            "value": r.mean,
            "std": r.std,
            "stderr": r.stderr,
            "n": len(r.increases),
        }
        for metric, results in perturbation_sharpness(evaluator, settings.radius).items()
        for r in results
    ]
    return MeasureResult(rows)


register(
    LossMeasure(
        "epsilon_sharpness",
        EpsilonSettings,
        epsilon,
        stream=3,
        summary="Keskar et al.'s epsilon-sharpness (box of radius eps (|w| + 1))",
        subset="ascent",
    )
)
register(
    LossMeasure(
        "adaptive_worst",
        AdaptiveWorstSettings,
        adaptive_worst,
        stream=4,
        rescaling_invariant=True,
        summary="adaptive worst-case sharpness, max over ||delta / |w| ||_p <= rho (Auto-PGD)",
        subset="ascent",
    )
)
register(
    LossMeasure(
        "adaptive_average",
        AdaptiveAverageSettings,
        adaptive_mean,
        stream=5,
        rescaling_invariant=True,
        summary="adaptive average sharpness, mean over delta ~ N(0, rho^2 diag(w^2))",
    )
)
register(
    CheckpointMeasure(
        "random_perturbation",
        PerturbationSettings,
        random_perturbation,
        PERTURBATION_COLUMNS,
        "sharpness.csv",
        summary="loss increase at radius r along random filter-normalized directions",
    )
)

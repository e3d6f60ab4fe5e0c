"""Curvature of one loss at a checkpoint: λ_max and trace of the autograd surrogate Hessian ``H``,
raw and in normalized coordinates ``diag(|w|) H diag(|w|)``.

- ``lambda_max``: the top eigenvalue by Lanczos with residual control (its error is of the order
  of the relative residual squared; ``converged`` says whether the tolerance was met);
- ``trace``: Hutch++ (Meyer et al. 2021) or Hutchinson, with its standard error;
- ``normalized_lambda_max``, ``normalized_trace``: the same estimators on the Hessian of
  ``theta -> L(w * theta)`` at ``theta = 1`` (:mod:`landscape.normalized`), which does not change
  when a layer that feeds a BatchNorm is rescaled (Dinh et al. 2017), so minima of different
  weight scales compare.

λ_max and trace are also taken of every per-time-step loss ``L_t = CE(O(t), y)``: L_TET's
cross-entropy part is their mean, so its Hessian is the mean of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from analysis.measures.inputs import LossObjective
from analysis.measures.registry import Estimate, LossMeasure, register
from landscape.lanczos import top_eigenvalues
from landscape.operators import LinearOperator
from landscape.trace import estimate_trace
from toolkit.settings import check, option, same_as

__all__ = [
    "LambdaMaxSettings",
    "NormalizedLambdaMaxSettings",
    "NormalizedTraceSettings",
    "TraceSettings",
]


@dataclass(frozen=True)
class LambdaMaxSettings:
    """Lanczos for the top eigenvalue."""

    lanczos_tol: float = option(
        1e-2, "relative Ritz residual tolerance of lambda_max", above=0.0, maximum=1.0
    )
    lanczos_max_steps: int = option(30, "largest Krylov dimension for lambda_max", minimum=1)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class TraceSettings:
    """The trace estimator and its budget."""

    trace_method: str = option(
        "xtrace",
        "trace estimator: xtrace (Epperly, Tropp & Webber 2024), hutch++ or hutchinson",
        choices=("xtrace", "hutch++", "hutchinson"),
    )
    trace_matvecs: int = option(
        16,
        "Hessian-vector products per trace estimate (xtrace with 16: about 3 % relative error on "
        "the MNIST-1D SNN's Hessian, where hutch++ needs 30; benchmarks/trace_estimators.py)",
        minimum=4,
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class NormalizedLambdaMaxSettings:
    """λ_max of ``diag(|w| + eta) H diag(|w| + eta)``."""

    lanczos_tol: float = same_as(LambdaMaxSettings, "lanczos_tol")
    lanczos_max_steps: int = same_as(LambdaMaxSettings, "lanczos_max_steps")
    eta: float = option(0.0, "added to |w| in the normalized and adaptive measures", minimum=0.0)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class NormalizedTraceSettings:
    """The trace of ``diag(|w| + eta) H diag(|w| + eta)``."""

    trace_method: str = same_as(TraceSettings, "trace_method")
    trace_matvecs: int = same_as(TraceSettings, "trace_matvecs")
    eta: float = same_as(NormalizedLambdaMaxSettings, "eta")

    def __post_init__(self) -> None:
        check(self)


def _top(operator: LinearOperator, settings, generator: torch.Generator) -> Estimate:
    found = top_eigenvalues(
        operator,
        1,
        "LA",
        settings.lanczos_tol,
        settings.lanczos_max_steps,
        generator=generator,
        return_vectors=False,
    )
    value, converged = float(found.eigenvalues[0]), bool(found.converged[0])
    return Estimate(value, converged=converged, num_evaluations=found.num_matvecs)


def _trace(operator: LinearOperator, settings, generator: torch.Generator) -> Estimate:
    found = estimate_trace(operator, settings.trace_matvecs, settings.trace_method, generator)
    return Estimate(found.mean, found.stderr, True, found.num_matvecs)


def lambda_max(loss: LossObjective, settings: LambdaMaxSettings, generator) -> Estimate:
    """Top eigenvalue of the surrogate Hessian."""
    return _top(loss.hessian, settings, generator)


def trace(loss: LossObjective, settings: TraceSettings, generator) -> Estimate:
    """Trace of the surrogate Hessian."""
    return _trace(loss.hessian, settings, generator)


def normalized_lambda_max(loss: LossObjective, settings, generator) -> Estimate:
    """Top eigenvalue in normalized coordinates."""
    return _top(loss.normalized(settings.eta), settings, generator)


def normalized_trace(loss: LossObjective, settings, generator) -> Estimate:
    """Trace in normalized coordinates."""
    return _trace(loss.normalized(settings.eta), settings, generator)


register(
    LossMeasure(
        "lambda_max",
        LambdaMaxSettings,
        lambda_max,
        stream=1,
        per_step=True,
        summary="top eigenvalue (Lanczos) of the surrogate Hessian",
    )
)
register(
    LossMeasure(
        "trace",
        TraceSettings,
        trace,
        stream=2,
        per_step=True,
        summary="Hutch++ trace of the surrogate Hessian",
    )
)
register(
    LossMeasure(
        "normalized_lambda_max",
        NormalizedLambdaMaxSettings,
        normalized_lambda_max,
        stream=1,
        rescaling_invariant=True,
        summary="top eigenvalue of diag(|w|) H diag(|w|)",
    )
)
register(
    LossMeasure(
        "normalized_trace",
        NormalizedTraceSettings,
        normalized_trace,
        stream=2,
        rescaling_invariant=True,
        summary="trace of diag(|w|) H diag(|w|)",
    )
)

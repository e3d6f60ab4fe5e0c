"""The measure registry: every per-checkpoint measure is one registered piece.

A measure is its settings (a frozen dataclass whose fields become command-line flags), the
function that computes it and the schema of what it writes. Two kinds:

- :class:`LossMeasure`: one number describing one loss at one checkpoint (curvature, sharpness),
  ``estimate(loss: LossObjective, settings, generator) -> Estimate`` with its standard error,
  convergence flag and cost. Every loss measure is a column of the flatness protocol
  (``analysis/flatness.py`` and the study); the ``per_step`` ones are also taken of every
  ``L_t = CE(O(t), y)``.
- :class:`CheckpointMeasure`: a table about one checkpoint (the Hessian spectrum, random
  perturbations, gradient statistics, accuracy at other T),
  ``compute(input: EvalInput, settings, evaluation: Evaluation) -> MeasureResult`` whose rows follow
  ``columns`` and are written to ``artifact``.

Adding a measure is one module in ``analysis/measures/`` that declares its settings and its
function and calls :func:`register`, plus its test; the package imports every module, so
commands, the flatness protocol, the artifact readers and the study find it here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MEASURES",
    "CheckpointMeasure",
    "Estimate",
    "LossMeasure",
    "MeasureResult",
    "describe",
    "get",
    "loss_measures",
    "register",
]


@dataclass(frozen=True)
class Estimate:
    """A loss measure's value and its quality.

    Attributes:
        value: The estimate.
        stderr: Its standard error (NaN where the estimator has none, e.g. an ascent).
        converged: Whether the estimator met its tolerance (True where it has none).
        num_evaluations: Hessian-vector products, gradients or loss evaluations it cost.
        name: The row's measure name, when one measure gives several rows (a sweep of radii:
            ``adaptive_worst@0.005``); None: the measure's own name.
        parameter: The radius (or other size) the value belongs to, if any.
        first_order: The value's first-order part (a worst case at a point that is not a
            minimum of the loss contains it); NaN where it does not apply.
    """

    value: float
    stderr: float = math.nan
    converged: bool = True
    num_evaluations: int = 0
    name: str | None = None
    parameter: float = math.nan
    first_order: float = math.nan


@dataclass(frozen=True)
class MeasureResult:
    """What a checkpoint measure computed: rows of its ``columns`` and, optionally, a JSON-ready
    record and arrays (saved as ``.npz``)."""

    rows: list[dict]
    record: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LossMeasure:
    """A number describing one loss at one checkpoint.

    Attributes:
        name: Registry name, e.g. ``lambda_max`` (the ``measure`` column of flatness tables).
        settings: Frozen dataclass of its options (defaults fixed before any study result).
        estimate: ``(loss, settings, generator) -> Estimate`` (or a list of them, one row each).
        stream: Its random stream: the flatness protocol seeds it ``probe_seed * 1000 +
            stream``, the same for every loss and checkpoint (common random numbers).
        per_step: Also taken of every per-time-step loss ``L_t``.
        rescaling_invariant: Unchanged when a layer that feeds a BatchNorm is rescaled.
        summary: One line for tables and ``--help``.
        subset: Which of the flatness protocol's subsets it runs on: ``main`` (curvature) or
            ``ascent`` (the ascents, whose every step costs a gradient).
    """

    name: str
    settings: type
    estimate: Callable[[Any, Any, Any], Estimate]
    stream: int
    per_step: bool = False
    rescaling_invariant: bool = False
    summary: str = ""
    subset: str = "main"


@dataclass(frozen=True)
class CheckpointMeasure:
    """A table about one checkpoint.

    Attributes:
        name: Registry name, e.g. ``timesteps``.
        settings: Frozen dataclass of its options.
        compute: ``(input, settings, evaluation) -> MeasureResult``; the
            :class:`~analysis.measures.inputs.Evaluation` holds the command's loss, dtype,
            device, seed and progress.
        columns: The columns of its rows, in order (its CSV header).
        artifact: The file its rows are written to, e.g. ``timesteps.csv``.
        summary: One line for tables and ``--help``.
    """

    name: str
    settings: type
    compute: Callable[[Any, Any, Any], MeasureResult]
    columns: tuple[str, ...]
    artifact: str
    summary: str = ""


MEASURES: dict[str, LossMeasure | CheckpointMeasure] = {}
"""name -> measure, in registration order."""


def register(measure: LossMeasure | CheckpointMeasure) -> LossMeasure | CheckpointMeasure:
    """Add ``measure`` to :data:`MEASURES`; returns it.

    Raises:
        ValueError: If the name is taken.
    """
    if measure.name in MEASURES:
        raise ValueError(f"measure {measure.name!r} is registered twice")
    MEASURES[measure.name] = measure
    return measure


def get(name: str) -> LossMeasure | CheckpointMeasure:
    """The measure called ``name``.

    Raises:
        KeyError: Naming the registered measures.
    """
    if name not in MEASURES:
        raise KeyError(f"unknown measure {name!r}; registered: {', '.join(MEASURES)}")
    return MEASURES[name]


def loss_measures() -> list[LossMeasure]:
    """Every registered loss measure, in registration order."""
    return [m for m in MEASURES.values() if isinstance(m, LossMeasure)]


def describe(measures: list[LossMeasure | CheckpointMeasure]) -> str:
    """One line per measure: its name, what it is, and whether it is rescaling-invariant."""
    lines = []
    for m in measures:
        invariant = " [rescaling-invariant]" if getattr(m, "rescaling_invariant", False) else ""
        lines.append(f"  {m.name:<22} {m.summary}{invariant}")
    return "\n".join(lines)

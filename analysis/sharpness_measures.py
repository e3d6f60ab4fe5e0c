"""Sharpness of one checkpoint for L_SDT and L_TET: epsilon-sharpness and random perturbations.

The library under ``analysis/sharpness.py``: :class:`SharpnessJob` holds the settings,
:func:`epsilon_rows` and :func:`perturbation_rows` return rows of :data:`HEADER`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from analysis.inputs import DataSpec, load_input, load_objective
from analysis.surfaces import metrics_for
from landscape.directions import random_direction
from landscape.sharpness import epsilon_sharpness, perturbation_sharpness
from landscape.surface import SurfaceEvaluator
from training.spikes import spike_counter

__all__ = ["HEADER", "SharpnessJob", "epsilon_rows", "perturbation_rows"]

HEADER = ["checkpoint", "method", "measure", "metric", "parameter", "value", "std", "stderr", "n"]


@dataclass(frozen=True)
class SharpnessJob:
    """Settings of the sharpness measures and the data they are evaluated on.

    Attributes:
        epsilon: Box radii of epsilon-sharpness.
        ascent_steps: Projected gradient-ascent steps per epsilon.
        step_fraction: Ascent step as a fraction of the box half-width.
        radius: Radii of the random perturbations, in filter units.
        draws: Random directions per radius.
        data: The fixed samples.
        device: Where to evaluate.
        dtype: Dtype of parameters and data.
    """

    epsilon: tuple[float, ...]
    ascent_steps: int
    step_fraction: float
    radius: tuple[float, ...]
    draws: int
    data: DataSpec
    device: torch.device
    dtype: torch.dtype

    def settings(self) -> dict:
        """The measures' settings, as recorded in sharpness.json."""
        return {
            "epsilon": list(self.epsilon),
            "ascent_steps": self.ascent_steps,
            "step_fraction": self.step_fraction,
            "radius": list(self.radius),
            "draws": self.draws,
        }

    def data_record(self) -> dict:
        """The data options, as strings, as recorded in sharpness.json."""
        data = self.data
        options = {
            "split": data.split,
            "samples": data.samples,
            "batch_size": data.batch_size,
            "device": self.device,
            "seed": data.seed,
            "dtype": self.dtype,
        }
        return {key: str(value) for key, value in options.items()}


def epsilon_rows(path: Path, method: str, job: SharpnessJob) -> list[list]:
    """Epsilon-sharpness of L_SDT and L_TET for every epsilon."""
    rows = []
    for loss in ("sdt", "tet"):
        objective = load_objective(
            path, job.data, loss=loss, device=job.device, dtype=job.dtype
        ).objective
        for epsilon in job.epsilon:
            generator = torch.Generator().manual_seed(job.data.seed)
            result = epsilon_sharpness(
                objective, epsilon, job.ascent_steps, job.step_fraction, generator
            )
            rows.append(
                [str(path), method, "epsilon_sharpness", f"l_{loss}", epsilon, result.value]
                + ["", "", 1]
            )
    return rows


def perturbation_rows(path: Path, job: SharpnessJob) -> tuple[str, list[list]]:
    """Mean increase of every metric at each radius over ``draws`` random directions.

    Returns:
        The checkpoint's training method and the rows.
    """
    loaded = load_input(path, job.data)
    model, config = loaded.model, loaded.config
    generator = torch.Generator().manual_seed(job.data.seed)
    weights = {name: p.detach() for name, p in model.named_parameters()}
    found = [random_direction(weights, generator) for _ in range(job.draws)]
    evaluator = SurfaceEvaluator(
        model,
        found,
        loaded.batches,
        metrics_for(config),
        observer=spike_counter,
        dtype=job.dtype,
        device=job.device,
    )
    rows = []
    for metric, results in perturbation_sharpness(evaluator, job.radius).items():
        for r in results:
            rows.append(
                [
                    str(path),
                    config["method"],
                    "random_perturbation",
                    metric,
                    r.radius,
                    r.mean,
                    r.std,
                    r.stderr,
                    len(r.increases),
                ]
            )
    return config["method"], rows

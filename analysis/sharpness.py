"""Sharpness of trained SNN checkpoints, for L_SDT and L_TET.

Two measures per checkpoint, on a fixed, seeded subset of the data (eval mode, the checkpoint's BN
statistics):

- epsilon-sharpness (Keskar et al. 2017): the largest loss increase found in the box
  |y_i| <= eps (|x_i| + 1) by a few projected sign-gradient ascent steps along the surrogate
  gradient, as 100 * (L_max - L) / (1 + L) (a lower bound of the true maximum);
- the increase of L_SDT, L_TET (and the change of accuracy) at radius r along --draws random
  filter-normalized directions (Li et al. 2018; biases and BN not moved): mean, std, stderr.

Writes sharpness.csv (long format, one row per checkpoint, measure, metric and epsilon or radius)
and sharpness.json (the same plus settings and provenance), by default into <first checkpoint's
run folder>/analysis/. Surface statistics (quadratic curvature, basin width) come with every
surface from analysis/surface.py; the rescaling-invariant adaptive measures from
analysis/flatness.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.registry import get
from analysis.measures.sharpness import (
    PERTURBATION_COLUMNS,
    EpsilonSettings,
    PerturbationSettings,
)
from toolkit.progress import Progress
from toolkit.settings import check, option, same_as

EPSILON, PERTURBATION = get("epsilon_sharpness"), get("random_perturbation")


@dataclass(frozen=True)
class SharpnessSettings:
    """Epsilon-sharpness at every --epsilon, and random perturbations at every --radius."""

    epsilon: tuple[float, ...] = option(
        (1e-3, 5e-4), "box radii of epsilon-sharpness, relative to |w| + 1", above=0.0
    )
    epsilon_steps: int = same_as(EpsilonSettings, "epsilon_steps")
    ascent_step_fraction: float = same_as(EpsilonSettings, "ascent_step_fraction")
    radius: tuple[float, ...] = same_as(PerturbationSettings, "radius")
    draws: int = same_as(PerturbationSettings, "draws")

    def __post_init__(self) -> None:
        check(self)

    def dry_run(self) -> SharpnessSettings:
        """One radius and one epsilon, two steps and two draws."""
        return replace(
            self, epsilon=self.epsilon[:1], epsilon_steps=2, radius=self.radius[:1], draws=2
        )


def epsilon_rows(task: Task, input, settings: SharpnessSettings) -> list[dict]:
    """Epsilon-sharpness of L_SDT and L_TET at every epsilon (random start from the seed)."""
    rows, method = [], input.config.method
    for loss_name in ("sdt", "tet"):
        loss = input.loss(loss_name, dtype=task.evaluation.dtype, device=task.evaluation.device)
        for epsilon in settings.epsilon:
            measure = EpsilonSettings(
                epsilon, settings.epsilon_steps, settings.ascent_step_fraction
            )
            generator = torch.Generator().manual_seed(task.evaluation.seed)
            found = EPSILON.estimate(loss, measure, generator)
            values = [f"l_{loss_name}", epsilon, found.value, "", "", 1]
            head = [str(input.checkpoint.path), method, "epsilon_sharpness"]
            rows.append(dict(zip(PERTURBATION_COLUMNS, head + values)))
    return rows


def run(task: Task) -> int:
    """Both measures of every checkpoint; the CSV, the JSON and a table on stdout."""
    settings, rows = task.settings, []
    perturbation = PerturbationSettings(settings.radius, settings.draws)
    with Progress(
        2 * len(task.checkpoints), "sharpness", "measure", task.evaluation.quiet, 5.0
    ) as bar:
        for checkpoint in task.checkpoints:
            input = task.input(checkpoint)
            found = PERTURBATION.compute(input, perturbation, task.evaluation).rows
            bar.update(1)
            rows += epsilon_rows(task, input, settings) + found
            bar.update(1)
    paths = [
        task.write_csv("sharpness.csv", PERTURBATION_COLUMNS, rows),
        task.write_json("sharpness.json", "sharpness", data=task.data.spec(), rows=rows),
    ]
    for row in rows:
        print(
            f"{Path(row['checkpoint']).parent.name[:40]:<40} {row['measure']:<20} "
            f"{row['metric']:<16} {row['parameter']:<8g} {row['value']:.4g}"
        )
    print(f"wrote {', '.join(str(path) for path in paths)}")
    return 0


COMMAND = CheckpointCommand(
    name="sharpness",
    doc=__doc__,
    example="  python analysis/sharpness.py runs/*/last.pt --radius 0.1 0.5 --draws 8\n",
    run=run,
    settings=SharpnessSettings,
    outputs=lambda settings: ["sharpness.csv", "sharpness.json"],
    data_fields=("samples", "split", "batch_size", "device", "dtype", "seed"),
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

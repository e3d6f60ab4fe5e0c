"""Temporal scalability (TET Fig. 4A): the same weights evaluated at other numbers of time steps.

For each T the static inputs are repeated T times and the model is evaluated in eval mode
without retraining: accuracy, L_SDT, L_TET (at the run's λ and φ), the mean per-step cross-entropy
and the mean firing rate, one row per T.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from analysis.measures.inputs import EvalInput, Evaluation
from analysis.measures.registry import CheckpointMeasure, MeasureResult, register
from toolkit.errors import ConfigError
from toolkit.settings import check, option
from training.runs.config import MAX_T
from training.runs.epoch import evaluate

__all__ = ["COLUMNS", "AtTimeSteps", "TimestepSettings"]

COLUMNS = (
    "checkpoint",
    "sha256",
    "method",
    "train_T",
    "T",
    "split",
    "acc",
    "l_sdt",
    "l_tet",
    "l_steps",
    "firing_rate",
    "num_samples",
)


@dataclass(frozen=True)
class TimestepSettings:
    """The numbers of time steps to evaluate."""

    T: tuple[int, ...] = option(
        tuple(range(1, 9)), "time steps to evaluate", minimum=1, maximum=MAX_T
    )

    def __post_init__(self) -> None:
        check(self)

    def dry_run(self) -> TimestepSettings:
        """The first two T only."""
        return replace(self, T=self.T[:2])


class AtTimeSteps(nn.Module):
    """Calls ``model(x, T=T)``: evaluates at another T without touching the model."""

    def __init__(self, model: nn.Module, T: int) -> None:
        super().__init__()
        self.model, self.T = model, T

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, T=self.T)


def compute(input: EvalInput, settings: TimestepSettings, evaluation: Evaluation) -> MeasureResult:
    """One row of :data:`COLUMNS` per T.

    Raises:
        ConfigError: If the checkpoint's inputs are event frames, not static inputs.
    """
    config, path = input.config, input.checkpoint.path
    if input.loader.x.ndim != 4:
        raise ConfigError(f"{path}: temporal scalability needs static inputs, not event frames")
    head = {
        "checkpoint": str(path),
        "sha256": input.checkpoint.sha256,
        "method": config.method,
        "train_T": config.T,
    }
    rows = []
    for T in settings.T:
        with torch.inference_mode():
            found = evaluate(
                AtTimeSteps(input.model, T), input.loader, config.tet_lambda, config.tet_phi
            )
        values = {key: found[key] for key in ("acc", "l_sdt", "l_tet", "l_steps", "firing_rate")}
        split, num = input.data["split"], input.data["num_samples"]
        rows.append({**head, "T": T, "split": split, **values, "num_samples": num})
    return MeasureResult(rows)


register(
    CheckpointMeasure(
        "timesteps",
        TimestepSettings,
        compute,
        COLUMNS,
        "timesteps.csv",
        summary="accuracy and losses of the same weights at other numbers of time steps",
    )
)

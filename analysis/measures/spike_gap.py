"""The surrogate-to-spike gap of a checkpoint: accuracy and losses with hard spikes (as trained)
and with the surrogate's smooth step sigma in place of the Heaviside step in the forward pass
(``training.snn.smooth``), and their differences, smooth minus hard (SAST, Nicholson 2026,
reports the surrogate-forward minus hard-spike accuracy). BatchNorm uses the checkpoint's running
statistics in both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from analysis.measures.inputs import EvalInput, Evaluation
from analysis.measures.registry import CheckpointMeasure, MeasureResult, register
from toolkit.settings import check, option
from training.data.datasets import TensorLoader
from training.runs.epoch import evaluate
from training.snn.smooth import smooth_model

__all__ = ["COLUMNS", "SpikeGapSettings", "spike_gap"]

_VALUES = ("acc", "l_sdt", "l_tet", "firing_rate")
COLUMNS = (
    "checkpoint",
    "sha256",
    "method",
    "split",
    "num_samples",
    "surrogate",
    "alpha",
    *(f"{key}_{kind}" for key in _VALUES for kind in ("hard", "smooth")),
    "gap_acc",
    "gap_l_sdt",
    "gap_l_tet",
)


@dataclass(frozen=True)
class SpikeGapSettings:
    """Which smooth step replaces the spike."""

    alpha: float | None = option(
        None, "surrogate width/slope of the smooth step (None: the checkpoint's)", above=0.0
    )

    def __post_init__(self) -> None:
        check(self)


def spike_gap(
    input: EvalInput, settings: SpikeGapSettings, evaluation: Evaluation
) -> MeasureResult:
    """One row of :data:`COLUMNS`: both forwards on the input's samples, in ``evaluation``'s dtype
    and device (the input's model is not changed)."""
    dtype, device = evaluation.dtype, evaluation.device
    models = {
        "hard": copy.deepcopy(input.model).to(device=device, dtype=dtype).eval(),
        "smooth": smooth_model(input.model, settings.alpha).to(device=device, dtype=dtype).eval(),
    }
    loader = TensorLoader(
        input.loader.x.to(device, dtype), input.loader.y.to(device), input.loader.batch_size
    )
    config = input.config
    found = {}
    for kind, model in models.items():
        with torch.no_grad():
            values = evaluate(model, loader, config.tet_lambda, config.tet_phi)
        found.update({f"{key}_{kind}": values[key] for key in _VALUES})
    alpha = settings.alpha if settings.alpha is not None else config.surrogate_alpha
    row = {
        "checkpoint": str(input.checkpoint.path),
        "sha256": input.checkpoint.sha256,
        "method": config.method,
        "split": input.data["split"],
        "num_samples": input.data["num_samples"],
        "surrogate": config.surrogate,
        "alpha": alpha,
        **found,
        **{f"gap_{key}": found[f"{key}_smooth"] - found[f"{key}_hard"] for key in _VALUES[:3]},
    }
    return MeasureResult([row])


register(
    CheckpointMeasure(
        "spike_gap",
        SpikeGapSettings,
        spike_gap,
        COLUMNS,
        "spike_gap.csv",
        summary="accuracy and losses with the smooth surrogate step in place of the spike",
    )
)

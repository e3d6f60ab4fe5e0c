"""Gradient-momentum statistics (the paper's gradient re-weighting argument), as long-format rows.

For a checkpoint, under both losses at the same weights, on the fixed training subset the trainer
logs every epoch (``stats_samples`` samples, seed 0, eval-mode BatchNorm): per-time-step
error-term norms (SDT's shared ``S(mean O) - y`` against TET's own ``S(O(t)) - y``), the
per-step gradient parts ``g_t`` (norms and cosines), gradient norms per layer, the output spread
over time and the per-step accuracy (``training.snn.gradient_stats``). For a run folder, the
statistics logged during training (``gradient_stats.csv``) are read instead (:func:`run_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.measures.inputs import DataSpec, EvalInput, Evaluation
from analysis.measures.registry import CheckpointMeasure, MeasureResult, register
from toolkit.errors import ToolkitError
from toolkit.settings import check, option
from training.runs.checkpoint import Checkpoint
from training.runs.config import TrainConfig
from training.runs.layout import RunFiles
from training.snn.gradient_stats import gradient_statistics, statistics_rows

__all__ = ["COLUMNS", "MomentumSettings", "data_spec", "method_label", "run_rows", "summarize"]

COLUMNS = ("source", "method", "epoch", "loss", "quantity", "t", "s", "layer", "value")


@dataclass(frozen=True)
class MomentumSettings:
    """The subset of the statistics (the trainer's, so recomputed values match logged ones)."""

    samples: int | None = option(
        None, "training samples (default: the run's stats_samples)", minimum=1
    )

    def __post_init__(self) -> None:
        check(self)

    def dry_run(self) -> MomentumSettings:
        """At most 32 samples."""
        return MomentumSettings(min(self.samples or 32, 32))


def data_spec(checkpoint: Checkpoint, settings: MomentumSettings) -> DataSpec:
    """The trainer's fixed subset of a checkpoint's training split."""
    samples = settings.samples or checkpoint.config.stats_samples
    return DataSpec("train", samples, batch_size=256, subset="trainer")


def method_label(config: TrainConfig) -> str:
    """``sdt``, ``tet`` or ``sdt->tet@k`` for a run switched after epoch k."""
    switch = config.switch_to_tet_at
    return f"sdt->tet@{switch}" if switch else config.method


def compute(input: EvalInput, settings: MomentumSettings, evaluation: Evaluation) -> MeasureResult:
    """The statistics of one checkpoint (its input must hold :func:`data_spec`'s samples)."""
    config = input.config
    stats = gradient_statistics(input.model, input.batches, config.tet_lambda, config.tet_phi)
    meta = {"source": str(input.checkpoint.path), "method": method_label(config)}
    rows = [{**meta, **row} for row in statistics_rows(stats, input.checkpoint.epoch)]
    return MeasureResult(rows)


def run_rows(run: RunFiles, config: TrainConfig) -> list[dict]:
    """The statistics a run logged during training (``gradient_stats.csv``), as rows.

    Raises:
        ToolkitError: If the run logged none.
    """
    if not run.gradient_stats.is_file():
        raise ToolkitError(
            f"{run.gradient_stats} not found; train with --gradient-stats, or --recompute"
        )
    frame = pd.read_csv(run.gradient_stats, keep_default_na=False)
    meta = {"source": str(run.path), "method": method_label(config)}
    return [{**meta, **row} for row in frame.to_dict("records")]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per source and epoch: gradient norms, mean error norms, output variance."""
    frame = frame.assign(value=pd.to_numeric(frame.value, errors="coerce"))
    key = ["source", "method", "epoch"]
    table = frame.pivot_table(
        index=key + ["loss"], columns="quantity", values="value", aggfunc="mean"
    ).reset_index()
    wide = table.pivot_table(index=key, columns="loss", values=["grad_norm", "error_norm"])
    wide.columns = [f"{quantity}_{loss}" for quantity, loss in wide.columns]
    return wide.reset_index()


register(
    CheckpointMeasure(
        "gradient_momentum",
        MomentumSettings,
        compute,
        COLUMNS,
        "momentum.csv",
        summary="per-step error terms and gradient parts of SDT and TET at the same weights",
    )
)

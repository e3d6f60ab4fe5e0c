"""What a run logs besides checkpoints: the ``metrics.csv`` columns, the atomic CSV writer and the
per-epoch gradient-momentum statistics (``gradient_stats.csv``)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from torch import nn

from toolkit.errors import ConfigError
from toolkit.io import atomic_write_text
from training.data.datasets import TensorLoader
from training.runs.config import TrainConfig
from training.snn.gradient_stats import (
    flat_parameters,
    gradient_statistics,
    momentum_subset,
    optimizer_state_norm,
    statistics_rows,
    update_cosine,
)

__all__ = [
    "METRICS",
    "write_rows",
    "MomentumTracker",
    "check_tensorboard",
    "tensorboard_writer",
    "log_scalars",
]

_EVAL_COLUMNS = ("acc", "l_sdt", "l_tet", "l_steps")
METRICS = [
    *("epoch", "method", "lr", "train_loss", "train_acc", "train_l_sdt", "train_l_tet"),
    *(f"train_eval_{key}" for key in _EVAL_COLUMNS),
    *(f"test_{key}" for key in _EVAL_COLUMNS),
    *("firing_rate", "grad_norm_sdt", "grad_norm_tet", "momentum_norm", "update_cos", "seconds"),
]
"""The columns of ``metrics.csv``, in order (one row per epoch)."""


def write_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Write dict rows as a CSV file atomically (columns not in ``fieldnames`` are left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


class MomentumTracker:
    """Per-epoch gradient-momentum statistics (``training.snn.gradient_stats``) on a fixed
    training subset.

    The subset (``stats_samples`` samples of the training split, seeded with 0, so every run of a
    dataset shares it) and the batch size are fixed, so the logged values equal the ones computed
    later from the saved checkpoint of the same epoch.
    """

    def __init__(self, config: TrainConfig, train: TensorLoader, model: nn.Module, resumed: dict):
        self.lamb, self.phi = config.tet_lambda, config.tet_phi
        x, y = momentum_subset(train.x, train.y, config.stats_samples)
        self.batches = list(TensorLoader(x, y, 256).batches())
        self.rows = list(resumed.get("gradient_stats", []))
        previous = resumed.get("previous_parameters")
        self.trajectory = ([previous] if previous is not None else []) + [flat_parameters(model)]

    def record(self, epoch: int, model: nn.Module, optimizer) -> dict:
        """Compute the statistics at the end of ``epoch``; returns the metrics.csv columns."""
        stats = gradient_statistics(model, self.batches, self.lamb, self.phi)
        self.trajectory = (self.trajectory + [flat_parameters(model)])[-3:]
        cosine = update_cosine(*self.trajectory) if len(self.trajectory) == 3 else float("nan")
        summary = {
            "grad_norm_sdt": stats["sdt"]["grad_norm"],
            "grad_norm_tet": stats["tet"]["grad_norm"],
            "momentum_norm": optimizer_state_norm(optimizer),
            "update_cos": cosine,
        }
        self.rows += statistics_rows(stats, epoch)
        for key in ("momentum_norm", "update_cos"):
            row = {"epoch": epoch, "loss": "", "quantity": key, "t": "", "s": "", "layer": ""}
            self.rows.append({**row, "value": summary[key]})
        return summary

    def state(self) -> dict:
        """Checkpoint entries that let a resumed run continue the statistics exactly."""
        previous = self.trajectory[-2] if len(self.trajectory) > 1 else None
        return {"gradient_stats": self.rows, "previous_parameters": previous}

    def write(self, path: Path) -> None:
        """Write every row so far as ``gradient_stats.csv``."""
        write_rows(path, self.rows, list(self.rows[0]))


_BOARD_GROUPS = (
    (
        "loss",
        (
            "train_loss",
            "train_l_sdt",
            "train_l_tet",
            "train_eval_l_sdt",
            "train_eval_l_tet",
            "test_l_sdt",
            "test_l_tet",
        ),
    ),
    ("accuracy", ("train_acc", "train_eval_acc", "test_acc")),
    ("spikes", ("firing_rate",)),
    ("gradient", ("grad_norm_sdt", "grad_norm_tet", "momentum_norm", "update_cos")),
    ("schedule", ("lr",)),
)


def check_tensorboard() -> None:
    """Raise a one-line ConfigError unless TensorBoard logging can be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--tensorboard needs the tensorboard package: pip install tensorboard"
        ) from None


def tensorboard_writer(directory: str | Path, run_name: str):
    """A ``SummaryWriter`` logging into ``directory/run_name`` (tensorboard imported lazily)."""
    check_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(directory) / run_name))


def log_scalars(writer, row: dict) -> None:
    """Log one epoch's metrics row (losses, accuracies, firing rate, gradient statistics)."""
    for group, keys in _BOARD_GROUPS:
        for key in keys:
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                writer.add_scalar(f"{group}/{key}", value, int(row["epoch"]))
    writer.flush()

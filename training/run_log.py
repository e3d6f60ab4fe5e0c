"""What a run logs besides checkpoints: the ``metrics.csv`` columns, the atomic CSV writer and the
per-epoch gradient-momentum statistics (``gradient_stats.csv``)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from torch import nn

from landscape.io import atomic_write_text
from training.config import TrainConfig
from training.data import TensorLoader
from training.momentum import (
    flat_parameters,
    gradient_statistics,
    momentum_subset,
    optimizer_state_norm,
    statistics_rows,
    update_cosine,
)

__all__ = ["METRICS", "write_rows", "MomentumTracker"]

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
    """Per-epoch gradient-momentum statistics on a fixed training subset (training.momentum).

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

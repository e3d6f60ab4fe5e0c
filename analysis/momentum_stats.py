"""Gradient-momentum statistics of checkpoints and runs, as long-format rows.

The library under ``analysis/momentum.py``: :func:`checkpoint_rows` recomputes the statistics of
one checkpoint on the subset the trainer logs, :func:`run_rows` reads (or recomputes) those of a
run directory, :func:`summarize` makes the one-row-per-epoch summary.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from analysis.inputs import DataSpec, load_input
from training import checkpoint
from training.errors import ToolkitError
from training.momentum import gradient_statistics, statistics_rows

__all__ = ["COLUMNS", "checkpoint_rows", "method_label", "run_rows", "summarize"]

COLUMNS = ("source", "method", "epoch", "loss", "quantity", "t", "s", "layer", "value")


def method_label(config: dict) -> str:
    """``sdt``, ``tet`` or ``sdt->tet@k`` for a run switched after epoch k."""
    switch = config.get("switch_to_tet_at", 0)
    return f"sdt->tet@{switch}" if switch else config["method"]


def checkpoint_rows(path: Path, samples: int | None, device: torch.device | str) -> list[dict]:
    """Statistics of one checkpoint, as long-format rows.

    Args:
        path: The checkpoint.
        samples: Training samples (default: the run's ``stats_samples``, else 256).
        device: Where to evaluate.
    """
    raw = checkpoint.load_raw(path)
    num = samples or raw["config"].get("stats_samples", 256)
    loaded = load_input(path, DataSpec("train", num, batch_size=256, subset="trainer"), device)
    config = loaded.config
    stats = gradient_statistics(
        loaded.model, loaded.batches, config["tet_lambda"], config["tet_phi"]
    )
    meta = {"source": str(path), "method": method_label(config)}
    return [{**meta, **row} for row in statistics_rows(stats, raw["epoch"])]


def run_rows(run_dir: Path, recompute: bool, samples: int | None, device) -> list[dict]:
    """Logged (or recomputed) statistics of every epoch of a run.

    Raises:
        ToolkitError: If the run has no epoch checkpoints (``recompute``) or no logged statistics.
    """
    if recompute:
        paths = sorted(run_dir.glob("epoch_*.pt"))
        if not paths:
            raise ToolkitError(f"{run_dir} has no epoch_NNN.pt files; train with --save-every 1")
        return [row for path in paths for row in checkpoint_rows(path, samples, device)]
    csv_path = run_dir / "gradient_stats.csv"
    if not csv_path.is_file():
        raise ToolkitError(f"{csv_path} not found; train with --gradient-stats, or --recompute")
    config = checkpoint.load_raw(run_dir / "last.pt")["config"]
    frame = pd.read_csv(csv_path, keep_default_na=False)
    meta = {"source": str(run_dir), "method": method_label(config)}
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

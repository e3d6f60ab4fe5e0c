"""Temporal scalability: the same weights evaluated at other numbers of time steps.

The library under ``analysis/timesteps.py``: :func:`evaluate_timesteps` gives one row of
:data:`COLUMNS` per number of time steps.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from analysis.inputs import DataSpec, load_input
from training.errors import ToolkitError
from training.trainer import evaluate

__all__ = ["COLUMNS", "AtTimeSteps", "evaluate_timesteps"]

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


class AtTimeSteps(nn.Module):
    """Calls ``model(x, T=T)``: evaluates at another T without touching the model."""

    def __init__(self, model: nn.Module, T: int) -> None:
        super().__init__()
        self.model, self.T = model, T

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, T=self.T)


def evaluate_timesteps(path: Path, steps: list[int], data: DataSpec, device) -> list:
    """Rows of ``COLUMNS`` for one checkpoint, on the samples of ``data`` (``samples=None``: every
    sample of the split, in order).

    Raises:
        ToolkitError: If the checkpoint's data are event frames, not static images.
    """
    loaded = load_input(path, data, device)
    split = data.split
    config = loaded.config
    if loaded.loader.x.ndim != 4:
        raise ToolkitError(f"{path}: temporal scalability needs static images, not event frames")
    digest, rows, num = loaded.provenance()["sha256"], [], loaded.data["num_samples"]
    for T in steps:
        model = AtTimeSteps(loaded.model, T)
        metrics = evaluate(model, loaded.loader, config["tet_lambda"], config["tet_phi"])
        values = [metrics[k] for k in ("acc", "l_sdt", "l_tet", "l_steps", "firing_rate")]
        rows.append((str(path), digest, config["method"], config["T"], T, split, *values, num))
    return rows

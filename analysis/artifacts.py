"""Find and read the artifacts of a runs/ folder: run directories and analysis outputs.

The layout is the one ``analysis/demo.py`` writes (and any user can reproduce by hand):

    runs/<run>/{config.json, metrics.csv, gradient_stats.csv, last.pt, epoch_NNN.pt}
    runs/analysis/hessian/hessian.{json,csv}          final checkpoints of the main runs
    runs/analysis/hessian_epochs/hessian.csv          per-epoch checkpoints (sharpness dynamics)
    runs/analysis/timesteps/timesteps.csv
    runs/analysis/surface/<name>/surface_*.{json,npz}
    runs/analysis/sharpness/sharpness.csv

Nothing here computes anything expensive; a missing artifact raises ``MissingArtifact`` naming the
command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["MissingArtifact", "Run", "find_runs", "main_runs", "read_csv", "ANALYSIS"]

ANALYSIS = "analysis"


class MissingArtifact(Exception):
    """An input of a figure does not exist; the message says which command makes it."""


@dataclass(frozen=True)
class Run:
    """One training run directory and its config."""

    path: Path
    config: dict

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def T(self) -> int:
        return int(self.config["T"])

    @property
    def role(self) -> str:
        """``switch``, ``tit`` (initialized from another run) or ``plain``."""
        if self.config.get("switch_to_tet_at"):
            return "switch"
        return "tit" if self.config.get("init_from") else "plain"

    def metrics(self) -> pd.DataFrame:
        return read_csv(self.path / "metrics.csv", "python training/run.py")


def read_csv(path: Path, command: str) -> pd.DataFrame:
    """``pd.read_csv`` or MissingArtifact naming ``command``."""
    if not Path(path).is_file():
        raise MissingArtifact(f"{path} is missing; it is made by: {command}")
    return pd.read_csv(path)


def find_runs(root: Path) -> list[Run]:
    """Every run directory (with config.json and metrics.csv) directly under ``root``."""
    runs = []
    for config_path in sorted(Path(root).glob("*/config.json")):
        if (config_path.parent / "metrics.csv").is_file():
            runs.append(Run(config_path.parent, json.loads(config_path.read_text())))
    if not runs:
        raise MissingArtifact(
            f"no runs under {root}; train with: python training/run.py --out {root}"
        )
    return runs


def main_runs(runs: list[Run], T: int | None = None) -> list[Run]:
    """Plain runs at the main T (default: the most common T among plain runs)."""
    plain = [run for run in runs if run.role == "plain"]
    if T is None and plain:
        T = pd.Series([run.T for run in plain]).mode().iloc[0]
    return [run for run in plain if run.T == T]

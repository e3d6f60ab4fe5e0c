"""Find and read the artifacts of a runs/ folder: run directories and analysis outputs.

The layout is the one ``analysis/demo.py`` writes (and any user can reproduce by hand):

    runs/<run>/{config.json, metrics.csv, gradient_stats.csv, last.pt, epoch_NNN.pt}
    runs/analysis/hessian/hessian.{json,csv}          final checkpoints of the main runs
    runs/analysis/hessian_epochs/hessian.csv          per-epoch checkpoints (sharpness dynamics)
    runs/analysis/timesteps/timesteps.csv
    runs/analysis/surface/<name>/surface_*.{json,npz}
    runs/analysis/sharpness/sharpness.csv

The one module that reads them: ``analysis/figures.py`` and ``analysis/report.py`` both stand on
it. Nothing here computes anything expensive; a missing artifact raises ``MissingArtifact``
naming the command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from landscape.surface import Surface, load_surface

__all__ = [
    "ANALYSIS",
    "MissingArtifact",
    "Run",
    "find_runs",
    "gradient_stats",
    "hessian_densities",
    "hessian_frame",
    "main_runs",
    "read_csv",
    "run_table",
    "surface",
    "switch_metrics",
    "timesteps_table",
    "tit_rows",
]

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


def switch_metrics(root: Path) -> tuple[pd.DataFrame, int]:
    """Per-epoch metrics of the switch runs plus the SDT-only run of the same seed, and the
    epoch after which the first switch run changed to TET."""
    runs = [run for run in find_runs(root) if run.role == "switch"]
    if not runs:
        raise MissingArtifact(
            f"no switch run under {root}; make one with: python training/run.py --method sdt "
            f"--switch-to-tet-at 10 --out {root}"
        )
    data = pd.concat([run.metrics().assign(run=run.path.name) for run in runs])
    baseline = [
        r for r in main_runs(find_runs(root)) if r.method == "sdt" and r.seed == runs[0].seed
    ]
    if baseline:
        data = pd.concat([data, baseline[0].metrics().assign(run=baseline[0].path.name)])
    return data, runs[0].config["switch_to_tet_at"]


def timesteps_table(root: Path, command: str | None = None) -> pd.DataFrame:
    """timesteps.csv; ``command`` overrides the command named when it is missing."""
    command = command or (
        f"python analysis/timesteps.py {root}/*/last.pt --out {root}/{ANALYSIS}/timesteps"
    )
    return read_csv(root / ANALYSIS / "timesteps" / "timesteps.csv", command)


def tit_rows(root: Path) -> pd.DataFrame:
    """One row per plain or TIT run: kind, method, T, seed, cost (time steps x epochs, the TIT
    parent's included) and final test accuracy."""
    runs = find_runs(root)
    rows = []
    for run in runs:
        last = run.metrics().iloc[-1]
        cost = run.T * len(run.metrics())
        kind = "scratch"
        if run.role == "tit":
            source = Path(run.config["init_from"]).parent
            parent = next((r for r in runs if r.path.name == source.name), None)  # moved too
            cost += parent.T * len(parent.metrics()) if parent else 0
            kind = "TIT"
        elif run.role != "plain":
            continue
        rows.append(
            {
                "run": run.path.name,
                "kind": kind,
                "method": run.method,
                "T": run.T,
                "seed": run.seed,
                "cost": cost,
                "test_acc": last.test_acc,
            }
        )
    return pd.DataFrame(rows)


def gradient_stats(runs: list[Run], command: str) -> list[pd.DataFrame]:
    """gradient_stats.csv of each run; ``command`` is named when one is missing."""
    return [read_csv(run.path / "gradient_stats.csv", command) for run in runs]


def surface(root: Path, name: str) -> Surface:
    """The first surface in ``<root>/analysis/surface/<name>/``."""
    folder = root / ANALYSIS / "surface" / name
    found = sorted(folder.glob("surface_*.json"))
    if not found:
        raise MissingArtifact(
            f"no surface in {folder}; make it with: python analysis/surface.py CKPT --out {folder}"
        )
    return load_surface(found[0])


def _methods(root: Path) -> dict[str, str]:
    return {run.path.name: run.method for run in find_runs(root)}


def hessian_frame(root: Path, folder: str) -> pd.DataFrame:
    """``<root>/analysis/<folder>/hessian.csv`` with the run name and method of every row."""
    frame = read_csv(
        root / ANALYSIS / folder / "hessian.csv",
        f"python analysis/hessian.py CKPTS --out {root}/{ANALYSIS}/{folder}",
    )
    methods = _methods(root)
    frame["run"] = frame.checkpoint.map(lambda p: Path(p).parent.name)
    frame["method"] = frame.run.map(lambda r: methods.get(r, "?"))
    return frame


def hessian_densities(root: Path, folder: str = "hessian_tet") -> list[tuple] | None:
    """``(method, grid, density)`` of every checkpoint's SLQ density, or None without densities."""
    folder = root / ANALYSIS / folder
    if not (folder / "hessian.npz").is_file():
        return None
    records = json.loads((folder / "hessian.json").read_text())["results"]
    methods = _methods(root)
    with np.load(folder / "hessian.npz") as arrays:
        return [
            (methods.get(record["name"], "other"), arrays[f"{i}/grid"], arrays[f"{i}/density"])
            for i, record in enumerate(records)
        ]


def _run_of(path: str) -> str:
    return Path(path).parent.name


def _hessian_summary(root: Path, loss: str) -> pd.DataFrame:
    path = root / ANALYSIS / f"hessian_{loss}" / "hessian.csv"
    columns = ["run", f"lambda_max_{loss}", f"trace_{loss}"]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(path)
    top = frame[(frame.quantity == "top_eigenvalue") & (frame["index"] == 0)]
    trace = frame[frame.quantity == "trace"]
    merged = top[["checkpoint", "value"]].merge(trace[["checkpoint", "value"]], on="checkpoint")
    merged["run"] = merged.checkpoint.map(_run_of)
    return merged.rename(columns={"value_x": columns[1], "value_y": columns[2]})[columns]


def _sharpness_summary(root: Path) -> pd.DataFrame:
    path = root / ANALYSIS / "sharpness" / "sharpness.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["run"])
    frame = pd.read_csv(path)
    frame = frame[frame.measure == "epsilon_sharpness"]
    frame = frame.assign(run=frame.checkpoint.map(_run_of), key="eps_sharpness_" + frame.metric)
    return frame.pivot_table(index="run", columns="key", values="value").reset_index()


def run_table(root: Path) -> pd.DataFrame:
    """One row per main run: final metrics plus Hessian and sharpness numbers where present."""
    rows = []
    for run in main_runs(find_runs(root)):
        last = run.metrics().iloc[-1]
        rows.append(
            {
                "run": run.path.name,
                "method": run.method,
                "seed": run.seed,
                "test_acc": last.test_acc,
                "gap": last.train_eval_acc - last.test_acc,
                "test_l_sdt": last.test_l_sdt,
                "test_l_steps": last.test_l_steps,
            }
        )
    table = pd.DataFrame(rows)
    for loss in ("sdt", "tet"):
        table = table.merge(_hessian_summary(root, loss), on="run", how="left")
    return table.merge(_sharpness_summary(root), on="run", how="left")

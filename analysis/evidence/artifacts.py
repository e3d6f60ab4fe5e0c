"""Find and read the artifacts of a runs folder: run folders and analysis outputs.

Paths come from :class:`training.runs.layout.RunLayout` and file names from the measures that
write them (``analysis.measures.registry``); the readers here are the one way figures and
reports see saved results. Nothing here computes anything expensive; a missing artifact raises
:class:`MissingArtifact` naming the command that makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.measures.registry import get
from landscape.surface_io import Surface, load_surface
from toolkit.errors import ConfigError
from training.runs.config import TrainConfig
from training.runs.layout import RunFiles, RunLayout

__all__ = [
    "MissingArtifact",
    "Run",
    "find_runs",
    "gradient_stats",
    "hessian_densities",
    "hessian_frame",
    "main_runs",
    "read_csv",
    "run_table",
    "runs_layout",
    "surface",
    "switch_metrics",
    "timesteps_table",
    "tit_rows",
]

HESSIAN, SHARPNESS = get("hessian").artifact, get("random_perturbation").artifact
TIMESTEPS = get("timesteps").artifact


class MissingArtifact(Exception):
    """An input of a figure does not exist; the message says which command makes it."""


@dataclass(frozen=True)
class Run:
    """One training run folder, its config and the shape of its inputs."""

    files: RunFiles
    config: TrainConfig
    input_shape: tuple

    @property
    def name(self) -> str:
        return self.files.path.name

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def T(self) -> int:
        return self.config.T

    @property
    def role(self) -> str:
        """``switch``, ``tit`` (initialized from another run) or ``plain``."""
        if self.config.switch_to_tet_at:
            return "switch"
        return "tit" if self.config.init_from else "plain"

    def metrics(self) -> pd.DataFrame:
        return read_csv(self.files.metrics, "python training/run.py")


def runs_layout(path: Path) -> RunLayout:
    """The layout of an existing runs folder.

    Raises:
        ConfigError: If ``path`` is not a folder.
    """
    if not Path(path).is_dir():
        raise ConfigError(f"--runs {path} is not a folder; expected the runs folder of training")
    return RunLayout(Path(path))


def read_csv(path: Path, command: str) -> pd.DataFrame:
    """``pd.read_csv`` or MissingArtifact naming ``command``."""
    if not Path(path).is_file():
        raise MissingArtifact(f"{path} is missing; it is made by: {command}")
    return pd.read_csv(path)


def find_runs(layout: RunLayout) -> list[Run]:
    """Every run folder (with config.json and metrics.csv) directly under the root."""
    runs = []
    for files in layout.runs():
        if files.metrics.is_file():
            stored = json.loads(files.config.read_text())
            shape = tuple(stored.get("input_shape", ()))
            runs.append(Run(files, TrainConfig.from_stored(stored), shape))
    if not runs:
        raise MissingArtifact(
            f"no runs under {layout.root}; train with: python training/run.py --out {layout.root}"
        )
    return runs


def main_runs(runs: list[Run], T: int | None = None) -> list[Run]:
    """Plain runs at the main T (default: the most common T among plain runs)."""
    plain = [run for run in runs if run.role == "plain"]
    if T is None and plain:
        T = pd.Series([run.T for run in plain]).mode().iloc[0]
    return [run for run in plain if run.T == T]


def switch_metrics(layout: RunLayout) -> tuple[pd.DataFrame, int]:
    """Per-epoch metrics of the switch runs plus the SDT-only run of the same seed, and the
    epoch after which the first switch run changed to TET."""
    runs = [run for run in find_runs(layout) if run.role == "switch"]
    if not runs:
        raise MissingArtifact(
            f"no switch run under {layout.root}; make one with: python training/run.py "
            f"--method sdt --switch-to-tet-at 10 --out {layout.root}"
        )
    data = pd.concat([run.metrics().assign(run=run.name) for run in runs])
    baseline = [
        r for r in main_runs(find_runs(layout)) if r.method == "sdt" and r.seed == runs[0].seed
    ]
    if baseline:
        data = pd.concat([data, baseline[0].metrics().assign(run=baseline[0].name)])
    return data, runs[0].config.switch_to_tet_at


def timesteps_table(layout: RunLayout, command: str | None = None) -> pd.DataFrame:
    """timesteps.csv; ``command`` overrides the command named when it is missing."""
    command = command or (
        f"python analysis/timesteps.py {layout.root}/*/last.pt --out {layout.timesteps}"
    )
    return read_csv(layout.timesteps / TIMESTEPS, command)


def tit_rows(layout: RunLayout) -> pd.DataFrame:
    """One row per plain or TIT run: kind, method, T, seed, cost (time steps x epochs, the TIT
    parent's included) and final test accuracy."""
    runs = find_runs(layout)
    rows = []
    for run in runs:
        last = run.metrics().iloc[-1]
        cost = run.T * len(run.metrics())
        kind = "scratch"
        if run.role == "tit":
            source = Path(run.config.init_from).parent
            parent = next((r for r in runs if r.name == source.name), None)  # moved too
            cost += parent.T * len(parent.metrics()) if parent else 0
            kind = "TIT"
        elif run.role != "plain":
            continue
        rows.append(
            {
                "run": run.name,
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
    return [read_csv(run.files.gradient_stats, command) for run in runs]


def surface(layout: RunLayout, name: str) -> Surface:
    """The first surface in the demo's surface folder ``name``."""
    folder = layout.surface(name)
    found = sorted(folder.glob("surface_*.json"))
    if not found:
        raise MissingArtifact(
            f"no surface in {folder}; make it with: python analysis/surface.py CKPT --out {folder}"
        )
    return load_surface(found[0])


def _methods(layout: RunLayout) -> dict[str, str]:
    return {run.name: run.method for run in find_runs(layout)}


def hessian_frame(layout: RunLayout, folder: Path) -> pd.DataFrame:
    """``<folder>/hessian.csv`` with the run name and method of every row."""
    frame = read_csv(folder / HESSIAN, f"python analysis/hessian.py CKPTS --out {folder}")
    methods = _methods(layout)
    frame["run"] = frame.checkpoint.map(lambda p: Path(p).parent.name)
    frame["method"] = frame.run.map(lambda r: methods.get(r, "?"))
    return frame


def hessian_densities(layout: RunLayout, loss: str = "tet") -> list[tuple] | None:
    """``(method, grid, density)`` of every checkpoint's SLQ density, or None without densities."""
    folder = layout.hessian(loss)
    if not (folder / "hessian.npz").is_file():
        return None
    records = json.loads((folder / "hessian.json").read_text())["results"]
    methods = _methods(layout)
    with np.load(folder / "hessian.npz") as arrays:
        return [
            (methods.get(record["name"], "other"), arrays[f"{i}/grid"], arrays[f"{i}/density"])
            for i, record in enumerate(records)
        ]


def _run_of(path: str) -> str:
    return Path(path).parent.name


def _hessian_summary(layout: RunLayout, loss: str) -> pd.DataFrame:
    path = layout.hessian(loss) / HESSIAN
    columns = ["run", f"lambda_max_{loss}", f"trace_{loss}"]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    frame = pd.read_csv(path)
    top = frame[(frame.quantity == "top_eigenvalue") & (frame["index"] == 0)]
    trace = frame[frame.quantity == "trace"]
    merged = top[["checkpoint", "value"]].merge(trace[["checkpoint", "value"]], on="checkpoint")
    merged["run"] = merged.checkpoint.map(_run_of)
    return merged.rename(columns={"value_x": columns[1], "value_y": columns[2]})[columns]


def _sharpness_summary(layout: RunLayout) -> pd.DataFrame:
    path = layout.sharpness / SHARPNESS
    if not path.is_file():
        return pd.DataFrame(columns=["run"])
    frame = pd.read_csv(path)
    frame = frame[frame.measure == "epsilon_sharpness"]
    frame = frame.assign(run=frame.checkpoint.map(_run_of), key="eps_sharpness_" + frame.metric)
    return frame.pivot_table(index="run", columns="key", values="value").reset_index()


def run_table(layout: RunLayout) -> pd.DataFrame:
    """One row per main run: final metrics plus Hessian and sharpness numbers where present."""
    rows = []
    for run in main_runs(find_runs(layout)):
        last = run.metrics().iloc[-1]
        rows.append(
            {
                "run": run.name,
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
        table = table.merge(_hessian_summary(layout, loss), on="run", how="left")
    return table.merge(_sharpness_summary(layout), on="run", how="left")

"""Where runs and their artifacts live: the one place that names run folders and files.

A runs folder (``runs/`` by default) holds one folder per training run, named by
:func:`run_name`, and the demo's analysis artifacts under ``analysis/``::

    runs/<dataset>-<model>-T<T>-<method>[-switch<k>][-init]-seed<seed>/
        config.json  metrics.csv  gradient_stats.csv  last.pt  epoch_NNN.pt  analysis/
    runs/analysis/{hessian_sdt, hessian_tet, hessian_epochs, timesteps, sharpness, momentum,
                   surface/<name>}/
    runs/study/

Training, the analysis commands (their default output folder), the demo, the study and the
readers of saved artifacts all take paths from :class:`RunLayout` and :class:`RunFiles`, never
from strings of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.runs.config import TrainConfig

__all__ = ["RunFiles", "RunLayout", "run_name"]


def run_name(config: TrainConfig) -> str:
    """Folder name of a run, e.g. ``digits-digits_snn-T4-tet-seed0``."""
    name = f"{config.dataset}-{config.model}-T{config.T}-{config.method}"
    if config.switch_to_tet_at:
        name += f"-switch{config.switch_to_tet_at}"
    if config.init_from:
        name += "-init"
    return f"{name}-seed{config.seed}"


@dataclass(frozen=True)
class RunFiles:
    """The files of one run folder.

    A run promises ``config.json``, ``metrics.csv`` (one row per epoch), ``last.pt``,
    ``epoch_NNN.pt`` for every multiple of ``save_every`` (``epoch_000.pt`` is the initialization)
    and, with gradient statistics, ``gradient_stats.csv``.
    """

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def gradient_stats(self) -> Path:
        return self.path / "gradient_stats.csv"

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @property
    def analysis(self) -> Path:
        """Where analysis commands write results about this run unless told otherwise."""
        return self.path / "analysis"

    def snapshot(self, epoch: int) -> Path:
        """``epoch_NNN.pt``: the weights after ``epoch`` epochs."""
        return self.path / f"epoch_{epoch:03d}.pt"

    def snapshots(self) -> dict[int, Path]:
        """``{epoch: path}`` of the ``epoch_NNN.pt`` files that exist."""
        found = {}
        for path in self.path.glob("epoch_*.pt"):
            number = path.stem[len("epoch_") :]
            if number.isdigit():
                found[int(number)] = path
        return found

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunFiles:
        """The run folder holding ``checkpoint``."""
        return cls(Path(checkpoint).parent)


@dataclass(frozen=True)
class RunLayout:
    """A runs folder: its run folders and the demo's analysis artifacts.

    Attributes:
        root: The runs folder, e.g. ``runs``.
    """

    root: Path

    def run(self, config: TrainConfig) -> RunFiles:
        """The folder of the run that ``config`` trains."""
        return RunFiles(self.root / run_name(config))

    def runs(self) -> list[RunFiles]:
        """Every run folder directly under the root that has a ``config.json``, sorted."""
        return [RunFiles(path.parent) for path in sorted(self.root.glob("*/config.json"))]

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    def hessian(self, loss: str) -> Path:
        """Hessian spectra of ``loss`` (``sdt``/``tet``) at the final checkpoints."""
        return self.analysis / f"hessian_{loss}"

    @property
    def hessian_epochs(self) -> Path:
        """λ_max of the per-epoch checkpoints (sharpness along training)."""
        return self.analysis / "hessian_epochs"

    @property
    def timesteps(self) -> Path:
        return self.analysis / "timesteps"

    @property
    def sharpness(self) -> Path:
        return self.analysis / "sharpness"

    @property
    def momentum(self) -> Path:
        return self.analysis / "momentum"

    @property
    def surfaces(self) -> Path:
        """The folder of the demo's surfaces."""
        return self.analysis / "surface"

    def surface(self, name: str) -> Path:
        """A surface of the demo: ``sdt``, ``tet`` (2-D) or ``interp`` (1-D)."""
        return self.surfaces / name

    @property
    def study(self) -> Path:
        """The evidence study's runs and flatness tables."""
        return self.root / "study"

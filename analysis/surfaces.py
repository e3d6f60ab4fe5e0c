"""What a loss-surface computation is: its settings, its metrics and its grid.

:class:`SurfaceJob` is the validated, frozen description of one surface (checkpoint, directions,
grid, data, output stem) that ``analysis/surface.py`` builds from its flags; the library below
the command (:mod:`analysis.surface_directions`, :mod:`analysis.surface_run`) takes only it.
:class:`SurfaceMetrics` is the per-point metric set shared by the surface and sharpness commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.common import DataConfig, option
from analysis.inputs import DataSpec
from landscape import directions as dirs
from landscape.surface import BN_MODES, Grid
from training.losses import loss_terms

__all__ = [
    "KINDS",
    "METRICS",
    "SurfaceConfig",
    "SurfaceJob",
    "SurfaceMetrics",
    "make_grid",
    "metrics_for",
]

KINDS = ("random", "interp", "pca", "eigen")
METRICS = ("l_sdt", "l_tet")  # the losses every surface records (and its stats CSV summarizes)


@dataclass(frozen=True)
class SurfaceMetrics:
    """``(outputs [T, B, C], labels [B]) -> {l_sdt, l_tet, accuracy}`` batch sums (picklable).

    Attributes:
        lamb: TET's lambda (weight of the MSE term).
        phi: TET's phi (target of the MSE term).
    """

    lamb: float = 0.05
    phi: float = 1.0

    def __call__(self, outputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        terms, n = loss_terms(outputs, labels, self.lamb, self.phi), len(labels)
        return {
            "l_sdt": terms["l_sdt"] * n,
            "l_tet": terms["l_tet"] * n,
            "accuracy": terms["correct"],
        }


def metrics_for(config: dict) -> SurfaceMetrics:
    """The metrics of a checkpoint's config (its TET lambda and phi)."""
    return SurfaceMetrics(config.get("tet_lambda", 0.05), config.get("tet_phi", 1.0))


@dataclass(frozen=True)
class SurfaceConfig:
    """Settings of a surface besides the checkpoint, the grid and the shared data/output flags."""

    dim: int = option(2, "1-D or 2-D surface", choices=(1, 2))
    directions: str = option("random", "random | interp:CKPT2[,CKPT3] | pca:RUN_DIR | eigen")
    normalization: str = option(
        "filter", "normalization of random directions", choices=dirs.NORMALIZATIONS
    )
    ignore_biasbn: bool = option(True, "zero random directions on 1-D tensors (biases, BN)")
    orthogonalize: bool = option(False, "Gram-Schmidt the second random direction")
    bn: str = option(
        "eval", "BN statistics: the checkpoint's, or recomputed at every point", choices=BN_MODES
    )
    bn_samples: int = option(256, "training samples for --bn recompute")
    basin_threshold: float = option(0.1, "loss increase bounding the basin width (stats CSV)")
    chunk_size: int = option(32, "grid points per chunk file: the unit of resume and sharing")
    compile: bool = option(False, "torch.compile the forward (pays off on large grids only)")
    input_cache: bool = option(True, "compute the input layer once per batch (exact)")
    channels_last: bool = option(True, "NHWC weights and inputs (pooling is faster on CPU)")
    plots: bool = option(True, "write PNG and PDF plots")


Range = tuple[float, float, int]


@dataclass(frozen=True, kw_only=True)
class SurfaceJob(SurfaceConfig, DataConfig):
    """One surface, fully specified: every setting plus the checkpoint, grid and output folder.

    Attributes:
        checkpoint: Checkpoint at the centre of the surface.
        out: Output folder.
        x: ``(low, high, num)`` of the x axis, or ``None`` for the default of the direction kind.
        y: As ``x``, for 2-D surfaces.
    """

    checkpoint: Path
    out: Path
    x: Range | None = None
    y: Range | None = None

    @property
    def kind(self) -> str:
        """``random``, ``interp``, ``pca`` or ``eigen``."""
        return self.directions.partition(":")[0]

    @property
    def spec(self) -> str:
        """The argument of ``interp:`` / ``pca:`` (empty otherwise)."""
        return self.directions.partition(":")[2]

    @property
    def stem(self) -> Path:
        """``<out>/surface_<checkpoint>_<kind>_<dim>d``: the output files' common stem."""
        return self.out / f"surface_{self.checkpoint.stem}_{self.kind}_{self.dim}d"

    @property
    def parts(self) -> Path:
        """Folder of the chunk files (resume and sharing between processes)."""
        return self.out / f"{self.stem.name}.parts"

    def data_spec(self) -> DataSpec:
        """The samples every grid point is evaluated on."""
        return DataSpec(self.split, self.samples, self.seed, self.batch_size)

    def bn_spec(self) -> DataSpec:
        """The training samples of ``--bn recompute``."""
        return DataSpec("train", self.bn_samples, self.seed + 1, self.batch_size)


def make_grid(job: SurfaceJob, extras: dict) -> Grid:
    """The grid of ``job.x``/``job.y`` or the default of the direction kind.

    Args:
        job: The surface.
        extras: Arrays of the directions; for ``pca`` without ``x``, the grid covers
            ``extras["trajectory"]``.
    """
    default = (-0.5, 1.5, 51) if job.kind == "interp" else (-1.0, 1.0, 51)
    ranges = [job.x or default, job.y or job.x or default][: job.dim]
    for axis in range(job.dim if job.kind == "pca" and not job.x else 0):
        track = extras["trajectory"][:, axis]
        low, high = min(track.min(), 0.0), max(track.max(), 0.0)
        step = 1.4 * (high - low) / 50 or 0.04
        first = -np.ceil((0.2 * (high - low) - low) / step)  # so that 0 is a grid point
        ranges[axis] = (float(first * step), float((first + 50) * step), 51)
    return Grid.linspace(*ranges)

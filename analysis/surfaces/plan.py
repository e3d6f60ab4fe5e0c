"""What a loss-surface computation is: its settings, its grid and its files.

:class:`SurfaceSettings` are the surface command's flags (validated: direction kind, ranges,
counts); :class:`SurfacePlan` is one surface, fully specified (settings, the shared data flags,
the centre checkpoint and the output folder), the only thing the computation
(:mod:`analysis.surfaces.compute`) and the directions (:mod:`analysis.surfaces.directions`) take.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analysis.measures.inputs import DataSettings, DataSpec
from landscape import directions as dirs
from landscape.store import Grid
from landscape.surface import BN_MODES
from toolkit.errors import ConfigError
from toolkit.settings import check, option
from training.runs.checkpoint import Checkpoint
from training.snn.smooth import SPIKES

__all__ = [
    "KINDS",
    "METRICS",
    "Range",
    "SurfacePlan",
    "SurfaceSettings",
    "make_grid",
    "parse_range",
]

KINDS = ("random", "interp", "pca", "eigen")
METRICS = ("l_sdt", "l_tet")  # the losses every surface records (and its stats CSV summarizes)
Range = tuple[float, float, int]


def parse_range(text: str) -> Range:
    """``"-1:1:51"`` -> ``(-1.0, 1.0, 51)``.

    Raises:
        ConfigError: Unless ``LOW < HIGH`` and ``NUM >= 3`` (a surface's statistics need 3
            points per axis).
    """
    try:
        low, high, num = text.split(":")
        value = (float(low), float(high), int(num))
        Grid.linspace(value)
        if value[2] < 3 or not all(np.isfinite(value[:2])):
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"expected LOW:HIGH:NUM with LOW < HIGH, NUM >= 3 (e.g. -1:1:51), got {text!r}"
        ) from None
    return value


@dataclass(frozen=True)
class SurfaceSettings:
    """Settings of a surface besides the checkpoint and the shared data and output flags."""

    dim: int = option(2, "1-D or 2-D surface", choices=(1, 2))
    directions: str = option("random", "random | interp:CKPT2[,CKPT3] | pca:RUN_DIR | eigen")
    x: str | None = option(
        None, "x grid LOW:HIGH:NUM (default: -1:1:51; interp -0.5:1.5:41; pca: the trajectory's)"
    )
    y: str | None = option(None, "y grid LOW:HIGH:NUM (default: as --x)")
    normalization: str = option(
        "filter", "normalization of random directions", choices=dirs.NORMALIZATIONS
    )
    ignore_biasbn: bool = option(True, "zero random directions on 1-D tensors (biases, BN)")
    orthogonalize: bool = option(False, "Gram-Schmidt the second random direction")
    bn: str = option(
        "eval", "BN statistics: the checkpoint's, or recomputed at every point", choices=BN_MODES
    )
    bn_samples: int = option(256, "training samples for --bn recompute", minimum=1)
    spikes: str = option(
        "hard",
        "forward pass: Heaviside spikes (as trained) or the surrogate's smooth step (files "
        "end in _smooth)",
        choices=SPIKES,
    )
    basin_threshold: float = option(
        0.1, "loss increase bounding the basin width (stats CSV)", above=0.0
    )
    chunk_size: int = option(
        32, "grid points per chunk file: the unit of resume and sharing", minimum=1
    )
    compile: bool = option(False, "torch.compile the forward (pays off on large grids only)")
    input_cache: bool = option(True, "compute the input layer once per batch (exact)")
    channels_last: bool = option(True, "NHWC weights and inputs (pooling is faster on CPU)")
    plots: bool = option(True, "write PNG and PDF plots")

    def __post_init__(self) -> None:
        check(self)
        if self.kind not in KINDS or bool(self.spec) != (self.kind in ("interp", "pca")):
            raise ConfigError(
                "--directions must be random, eigen, interp:CKPT2[,CKPT3] or pca:RUN_DIR, "
                f"got {self.directions!r}"
            )
        if self.kind == "interp" and self.spec.count(",") + 1 != self.dim:
            raise ConfigError(
                f"--dim {self.dim} needs {self.dim} interp checkpoint(s) (interp:CKPT2 for "
                "1-D, interp:CKPT2,CKPT3 for the plane)"
            )
        if self.dim == 1 and self.y is not None:
            raise ConfigError("--y is only used with --dim 2")
        for text in (self.x, self.y):
            if text is not None:
                parse_range(text)

    @property
    def kind(self) -> str:
        """``random``, ``interp``, ``pca`` or ``eigen``."""
        return self.directions.partition(":")[0]

    @property
    def spec(self) -> str:
        """The argument of ``interp:`` / ``pca:`` (empty otherwise)."""
        return self.directions.partition(":")[2]

    @property
    def others(self) -> list[Path]:
        """The further checkpoints of ``interp:`` (empty otherwise)."""
        return [Path(p) for p in self.spec.split(",")] if self.kind == "interp" else []

    def ranges(self) -> tuple[Range | None, Range | None]:
        """The parsed ``x`` and ``y`` (None: the kind's default)."""
        return tuple(parse_range(t) if t is not None else None for t in (self.x, self.y))

    def dry_run(self) -> SurfaceSettings:
        """3 points per axis, chunks of 4, 32 BN samples."""
        x, y = self.ranges()
        low, high = (x or (-1.0, 1.0, 3))[:2]
        y_text = None
        if self.dim == 2:
            y_low, y_high = (y or (low, high, 3))[:2]
            y_text = f"{y_low}:{y_high}:3"
        return replace(self, x=f"{low}:{high}:3", y=y_text, bn_samples=32, chunk_size=4)


@dataclass(frozen=True)
class SurfacePlan:
    """One surface, fully specified.

    Attributes:
        settings: The surface's settings.
        data: The shared data flags (samples, split, seed, batch size, loss, device, dtype).
        checkpoint: Checkpoint at the centre of the surface.
        out: Output folder.
        ends: The further checkpoints of ``interp:``, read once.
    """

    settings: SurfaceSettings
    data: DataSettings
    checkpoint: Path
    out: Path
    ends: tuple[Checkpoint, ...] = ()

    @property
    def stem(self) -> Path:
        """``<out>/surface_<checkpoint>_<kind>_<dim>d[_smooth]``: the output files' common stem."""
        s = self.settings
        smooth = "_smooth" if s.spikes == "smooth" else ""
        return self.out / f"surface_{self.checkpoint.stem}_{s.kind}_{s.dim}d{smooth}"

    @property
    def parts(self) -> Path:
        """Folder of the chunk files (resume and sharing between processes)."""
        return self.out / f"{self.stem.name}.parts"

    @property
    def stats(self) -> Path:
        """The statistics CSV."""
        return self.out / f"{self.stem.name}_stats.csv"

    def data_spec(self) -> DataSpec:
        """The samples every grid point is evaluated on."""
        return self.data.spec()

    def bn_spec(self) -> DataSpec:
        """The training samples of ``--bn recompute``."""
        return DataSpec("train", self.settings.bn_samples, self.data.seed + 1, self.data.batch_size)


def make_grid(plan: SurfacePlan, extras: dict) -> Grid:
    """The grid of ``--x``/``--y`` or the default of the direction kind.

    Args:
        plan: The surface.
        extras: Arrays of the directions; for ``pca`` without ``x``, the grid covers
            ``extras["trajectory"]``.
    """
    s = plan.settings
    x, y = s.ranges()
    default = (-0.5, 1.5, 41) if s.kind == "interp" else (-1.0, 1.0, 51)  # both ends on it
    ranges = [x or default, y or x or default][: s.dim]
    for axis in range(s.dim if s.kind == "pca" and not x else 0):
        track = extras["trajectory"][:, axis]
        low, high = min(track.min(), 0.0), max(track.max(), 0.0)
        step = 1.4 * (high - low) / 50 or 0.04
        first = -np.ceil((0.2 * (high - low) - low) / step)  # so that 0 is a grid point
        ranges[axis] = (float(first * step), float((first + 50) * step), 51)
    return Grid.linspace(*ranges)

"""A computed loss surface and its files: ``<stem>.json`` (metadata) and ``<stem>.npz`` (arrays)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.io import load_json, save_json, save_npz

__all__ = ["Surface", "save_surface", "load_surface", "load_surface_frame"]


@dataclass
class Surface:
    """A computed surface.

    Attributes:
        axes: ``D`` coordinate arrays (``[nx]``, ``[ny]``).
        values: name -> array of the grid's shape ``(nx,)`` or ``(nx, ny)`` (x-major: ``[i, j]``
            is the point ``(axes[0][i], axes[1][j])``).
        metadata: Settings, provenance and summaries (JSON types).
        extras: Further arrays, e.g. ``trajectory`` ``[E, 2]`` for PCA surfaces.
    """

    axes: list[np.ndarray]
    values: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def frame(self):
        """Long format: a row per point and metric; columns ``x`` (``y``), ``metric``, ``value``."""
        import pandas as pd

        mesh = np.meshgrid(*self.axes, indexing="ij")
        columns = {name: m.reshape(-1) for name, m in zip("xy", mesh)}
        frames = [
            pd.DataFrame({**columns, "metric": name, "value": value.reshape(-1)})
            for name, value in self.values.items()
        ]
        return pd.concat(frames, ignore_index=True)


def save_surface(path: str | Path, surface: Surface) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (metadata, axes, metric names) and ``<stem>.npz`` (arrays), atomically.

    Returns:
        The two paths.
    """
    path = Path(path).with_suffix("")
    arrays = {f"axis{i}": axis for i, axis in enumerate(surface.axes)}
    arrays.update({f"value/{k}": v for k, v in surface.values.items()})
    arrays.update({f"extra/{k}": v for k, v in surface.extras.items()})
    npz = save_npz(path.with_suffix(".npz"), arrays)
    payload = {"kind": "surface", "format_version": 1, **surface.metadata}
    payload.update(axes=surface.axes, metrics=list(surface.values), arrays=npz.name)
    return save_json(path.with_suffix(".json"), payload), npz


def load_surface(path: str | Path) -> Surface:
    """Read a surface written by :func:`save_surface` (give the ``.json``, ``.npz`` or stem)."""
    path = Path(path).with_suffix("")
    metadata = load_json(path.with_suffix(".json"))
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    axes = [arrays[f"axis{i}"] for i in range(len(metadata["axes"]))]
    values = {k[6:]: v for k, v in arrays.items() if k.startswith("value/")}
    extras = {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
    for key in ("axes", "metrics", "arrays"):
        metadata.pop(key, None)
    return Surface(axes, values, metadata, extras)


def load_surface_frame(path: str | Path):
    """A surface file as a long-format ``pandas.DataFrame`` in one call (see ``Surface.frame``)."""
    return load_surface(path).frame()

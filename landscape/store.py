"""Grids and their resumable, shareable computation: chunk files and the loop that fills them.

A grid of ``N`` points is cut into chunks of ``chunk_size`` points; each chunk is one ``.npz``
file written atomically with a fingerprint of the settings, so a killed run resumes and several
processes share a grid (chunk ``c`` belongs to rank ``c % world_size``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from toolkit.io import save_npz

__all__ = ["Grid", "SurfaceStore", "iter_surface"]


@dataclass(frozen=True)
class Grid:
    """A 1-D or 2-D grid of coordinates; points are ordered x-major (``indexing="ij"``).

    Attributes:
        axes: One tuple of coordinates per direction, e.g. ``(xs,)`` or ``(xs, ys)``.
    """

    axes: tuple[tuple[float, ...], ...]

    @classmethod
    def linspace(cls, *ranges: tuple[float, float, int]) -> Grid:
        """A grid from ``(low, high, num)`` per axis.

        Raises:
            ValueError: On more than two axes, ``low >= high`` or ``num < 1``.

        Example:
            >>> Grid.linspace((-1, 1, 3), (0, 1, 2)).coordinates().tolist()
            [[-1.0, 0.0], [-1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
        """
        if not 1 <= len(ranges) <= 2:
            raise ValueError(f"a grid has 1 or 2 axes, got {len(ranges)}")
        for low, high, num in ranges:
            if int(num) < 1 or not np.isfinite([low, high]).all() or (num > 1 and low >= high):
                raise ValueError(
                    f"grid range must be low:high:num with low < high, num >= 1; got "
                    f"{low}:{high}:{num}"
                )
        return cls(tuple(tuple(np.linspace(lo, hi, int(n)).tolist()) for lo, hi, n in ranges))

    @property
    def shape(self) -> tuple[int, ...]:
        """``(nx,)`` or ``(nx, ny)``."""
        return tuple(len(axis) for axis in self.axes)

    @property
    def num_points(self) -> int:
        """Number of grid points."""
        return int(np.prod(self.shape))

    def coordinates(self) -> Tensor:
        """All points, ``[num_points, D]`` float64, x-major."""
        axes = [torch.tensor(axis, dtype=torch.float64) for axis in self.axes]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)


class Evaluates(Protocol):
    """Anything with ``evaluate(coords [K, D]) -> {name: [K]}``, e.g. ``SurfaceEvaluator``."""

    def evaluate(self, coords: Tensor) -> Mapping[str, Tensor]: ...


class SurfaceStore:
    """Chunk files of a grid being computed: ``<folder>/chunk_NNNNNN.npz``, each written atomically.

    Every chunk records ``fingerprint`` (a digest of everything that defines the surface); a chunk
    with another fingerprint or an unreadable file counts as missing.

    Args:
        folder: Directory of the chunk files.
        num_points: Grid size ``N``.
        chunk_size: Points per chunk (the unit of resume and of work sharing).
        fingerprint: Settings digest.
    """

    def __init__(self, folder: str | Path, num_points: int, chunk_size: int, fingerprint: str):
        if num_points < 1 or chunk_size < 1:
            raise ValueError(
                f"num_points and chunk_size must be >= 1, got {num_points}, {chunk_size}"
            )
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.num_points, self.chunk_size = num_points, chunk_size
        self.num_chunks = -(-num_points // chunk_size)

    def indices(self, chunk: int) -> np.ndarray:
        """Grid indices of a chunk."""
        return np.arange(
            chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, self.num_points)
        )

    def _path(self, chunk: int) -> Path:
        return self.folder / f"chunk_{chunk:06d}.npz"

    def _read(self, chunk: int) -> dict[str, np.ndarray] | None:
        try:
            with np.load(self._path(chunk), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, KeyError):
            return None
        if str(arrays.pop("_fingerprint", "")) != self.fingerprint:
            return None
        return arrays

    def is_done(self, chunk: int) -> bool:
        """True when the chunk's file exists, is readable and has this fingerprint."""
        return self._path(chunk).is_file() and self._read(chunk) is not None

    def write(self, chunk: int, values: Mapping[str, Tensor]) -> None:
        """Write one chunk's ``name -> [len(indices)]`` values atomically."""
        save_npz(self._path(chunk), {**values, "_fingerprint": np.array(self.fingerprint)})

    def read(self) -> dict[str, np.ndarray]:
        """All values, name -> ``[N]`` in grid order.

        Raises:
            RuntimeError: If a chunk is missing or stale.
        """
        parts = [self._read(chunk) for chunk in range(self.num_chunks)]
        missing = [chunk for chunk, part in enumerate(parts) if part is None]
        if missing:
            raise RuntimeError(f"{len(missing)} chunk(s) missing in {self.folder}: {missing[:5]}")
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def iter_surface(
    evaluator: Evaluates,
    coords: Tensor,
    store: SurfaceStore,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[int, int, bool]]:
    """Compute this rank's chunks that are not on disk yet; yields after each chunk.

    Args:
        evaluator: The engine.
        coords: ``[N, D]`` all grid points (e.g. ``Grid.coordinates()``).
        store: Where chunks go.
        rank: This process's rank; it owns chunks ``c`` with ``c % world_size == rank``.
        world_size: Number of processes sharing the grid.

    Yields:
        ``(chunk, num_points, resumed)``: ``resumed`` is True for a chunk found on disk.
    """
    if coords.shape[0] != store.num_points:
        raise ValueError(f"coords has {coords.shape[0]} points, the store {store.num_points}")
    for chunk in range(rank, store.num_chunks, world_size):
        indices = store.indices(chunk)
        if store.is_done(chunk):
            yield chunk, len(indices), True
            continue
        store.write(chunk, evaluator.evaluate(coords[torch.as_tensor(indices)]))
        yield chunk, len(indices), False

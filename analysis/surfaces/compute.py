"""Computing one loss surface: prepare (checkpoint, data, directions), compute (this rank's
chunks of the grid, resumable), assemble (the :class:`landscape.surface_io.Surface` and its
statistics). ``analysis/surface.py`` turns its flags into a :class:`SurfacePlan` and calls these.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from analysis.measures.inputs import Datasets, PointMetrics, load_input, resolve_dtype, select
from analysis.surfaces.directions import build_directions
from analysis.surfaces.plan import METRICS, SurfacePlan, make_grid
from landscape import api
from landscape import directions as dirs
from landscape.sharpness import surface_statistics
from landscape.store import Grid, SurfaceStore, iter_surface
from landscape.surface import SurfaceEvaluator
from landscape.surface_io import Surface
from toolkit.command import provenance
from toolkit.errors import ConfigError
from toolkit.io import resolve_device, to_plain
from toolkit.progress import Progress
from training.runs.checkpoint import Checkpoint
from training.runs.distributed import Distributed
from training.snn.smooth import smooth_model
from training.snn.spikes import spike_counter

__all__ = [
    "STATS_COLUMNS",
    "PreparedSurface",
    "assemble",
    "check_chunking",
    "compute",
    "fingerprint",
    "prepare",
    "statistics_rows",
]

STATS_COLUMNS = ("checkpoint", "surface", "metric", "statistic", "value")


@dataclass(frozen=True)
class PreparedSurface:
    """All that the grid needs: the record so far, the evaluator, the chunk store, the grid and
    the extra arrays (directions, PCA trajectory) saved with the surface."""

    record: dict
    evaluator: SurfaceEvaluator
    store: SurfaceStore
    grid: Grid
    extras: dict


def fingerprint(record: dict) -> str:
    """sha256 of a JSON record (settings that must match to reuse partial results)."""
    return hashlib.sha256(json.dumps(to_plain(record), sort_keys=True).encode()).hexdigest()


def shared_directions(input, plan: SurfacePlan, record: dict, dist: Distributed):
    """Rank 0 builds the directions once into the parts folder (or reuses them); all ranks read.

    Raises:
        ConfigError: If the parts folder holds directions of other settings.
    """
    path, digest = plan.parts / "directions.npz", fingerprint(record)
    if dist.is_main and not path.is_file():
        found = build_directions(input, plan)
        metadata = {"fingerprint": digest, **found.info}
        dirs.save_directions(path, found.directions, metadata, found.extras)
    dist.barrier()
    found, info, extras = dirs.load_directions(path)
    if info.pop("fingerprint") != digest:
        message = "holds a partial surface of other settings; pass --overwrite to discard it"
        raise ConfigError(f"{plan.parts} {message}")
    return found, info, extras


def _record(plan: SurfacePlan, checkpoint: Checkpoint, data: dict) -> dict:
    s = plan.settings
    return {
        "checkpoint": checkpoint.record,
        "directions": {
            "kind": s.kind,
            "spec": s.spec,
            "dim": s.dim,
            "seed": plan.data.seed,
            "normalization": s.normalization,
            "ignore_biasbn": s.ignore_biasbn,
            "orthogonalize": s.orthogonalize,
            "loss": plan.data.loss,
        },
        "data": data,
        "dtype": plan.data.dtype,  # eigen directions depend on them
    }


def prepare(plan: SurfacePlan, checkpoint: Checkpoint, dist: Distributed) -> PreparedSurface:
    """Load the model and data, share the directions; all that the grid needs."""
    s, datasets = plan.settings, Datasets()
    input = load_input(checkpoint, plan.data_spec(), "cpu", datasets)
    config = checkpoint.config
    bn_batches = []
    if s.bn != "eval":
        bn_batches = [x for x, _ in select(datasets, config, plan.bn_spec())[0]]
    record = _record(plan, checkpoint, input.data)
    found, info, extras = shared_directions(input, plan, record, dist)
    grid = make_grid(plan, extras)
    device = resolve_device(plan.data.device)
    record["directions"].update(info)
    record.update(
        grid={"axes": grid.axes, "shape": grid.shape},
        mode="eval",
        bn={"mode": s.bn, "samples": sum(len(x) for x in bn_batches)},
        model={"name": config.model, "T": config.T, "method": config.method},
        spikes=s.spikes,
        losses={"tet_lambda": config.tet_lambda, "tet_phi": config.tet_phi},
        chunk_size=s.chunk_size,
        device=str(device),
        # float32 values may differ by a spike flip between these fast paths
        fast_paths={
            "input_cache": s.input_cache,
            "channels_last": s.channels_last,
            "compile": s.compile,
        },
    )
    evaluator = api.surface_evaluator(
        input.model if s.spikes == "hard" else smooth_model(input.model),
        found,
        input.batches,
        PointMetrics.of(config),
        observer=spike_counter,
        bn_mode=s.bn,
        bn_batches=bn_batches,
        use_input_cache=s.input_cache,
        use_compile=s.compile,
        use_channels_last=s.channels_last,
        dtype=resolve_dtype(plan.data.dtype),
        device=device,
    )
    check_chunking(plan, grid.num_points)
    store = SurfaceStore(plan.parts, grid.num_points, s.chunk_size, fingerprint(record))
    for i, direction in enumerate(found):
        extras.update({f"direction{i}/{name}": t.numpy() for name, t in direction.items()})
    return PreparedSurface(record, evaluator, store, grid, extras)


def check_chunking(plan: SurfacePlan, num_points: int) -> None:
    """Refuse to resume a partial surface with another ``--chunk-size`` (its points would be lost).

    Raises:
        ConfigError: If the first chunk file holds another number of points.
    """
    try:
        with np.load(plan.parts / "chunk_000000.npz", allow_pickle=False) as data:
            found = len(next(data[key] for key in data.files if key != "_fingerprint"))
    except (OSError, ValueError, EOFError, KeyError, StopIteration):
        return  # no readable first chunk: nothing to lose
    if found != min(plan.settings.chunk_size, num_points):
        raise ConfigError(
            f"{plan.parts} holds chunks of {found} points; pass --chunk-size {found} to resume "
            "them, or --overwrite to start over"
        )


def compute(prepared: PreparedSurface, dist: Distributed, quiet: bool) -> tuple[int, int]:
    """This rank's share of the grid; returns ``(points computed, points resumed)``."""
    store, counts, coords = prepared.store, [0, 0], prepared.grid.coordinates()
    owned = sum(len(store.indices(c)) for c in range(dist.rank, store.num_chunks, dist.world))
    name = prepared.record["checkpoint"]["path"]
    with Progress(owned, f"surface of {name}", "point", quiet or dist.rank > 0) as bar:
        chunks = iter_surface(prepared.evaluator, coords, store, dist.rank, dist.world)
        for _, size, resumed in chunks:
            counts[int(resumed)] += size
            bar.update(size)
    return counts[0], counts[1]


def assemble(prepared: PreparedSurface, run: dict) -> Surface:
    """The surface of all chunks, with its record, the run's facts and the provenance."""
    grid = prepared.grid
    values = {key: v.reshape(grid.shape) for key, v in prepared.store.read().items()}
    metadata = {**prepared.record, "run": run, "provenance": provenance()}
    return Surface([np.asarray(axis) for axis in grid.axes], values, metadata, prepared.extras)


def statistics_rows(plan: SurfacePlan, surface: Surface) -> list[list]:
    """Rows of :data:`STATS_COLUMNS`: quadratic curvature, basin width, flat share per loss."""
    threshold = plan.settings.basin_threshold
    return [
        [str(plan.checkpoint), plan.stem.name, metric, key, value]
        for metric in METRICS
        for key, value in surface_statistics(
            surface.axes, surface.values[metric], threshold
        ).items()
    ]

"""Computing one loss surface: prepare (checkpoint, data, directions), compute (this rank's
chunks of the grid, resumable), assemble (the :class:`landscape.surface.Surface` and its
statistics). ``analysis/surface.py`` parses the flags into a :class:`SurfaceJob` and calls these.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from analysis.common import Progress, provenance, resolve_device
from analysis.inputs import checkpoint_record, load_batches, load_input, resolve_dtype
from analysis.surface_directions import build_directions
from analysis.surfaces import METRICS, SurfaceJob, make_grid, metrics_for
from landscape import directions as dirs
from landscape import to_plain
from landscape.sharpness import surface_statistics
from landscape.surface import Grid, Surface, SurfaceEvaluator, SurfaceStore, iter_surface
from training.distributed import Distributed
from training.errors import ConfigError
from training.spikes import spike_counter

__all__ = [
    "STATS_HEADER",
    "PreparedSurface",
    "assemble",
    "check_chunking",
    "compute",
    "fingerprint",
    "prepare",
    "shared_directions",
    "statistics_rows",
]

STATS_HEADER = ["checkpoint", "surface", "metric", "statistic", "value"]


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


def shared_directions(model, job: SurfaceJob, record: dict, dist: Distributed):
    """Rank 0 builds the directions once into the parts folder (or reuses them); all ranks read.

    Raises:
        RuntimeError: If the parts folder holds directions of other settings.
    """
    path, digest = job.parts / "directions.npz", fingerprint(record)
    if dist.is_main and not path.is_file():
        found, info, extras = build_directions(model, job)
        dirs.save_directions(path, found, {"fingerprint": digest, **info}, extras)
    dist.barrier()
    found, info, extras = dirs.load_directions(path)
    if info.pop("fingerprint") != digest:
        message = "holds a partial surface of other settings; pass --overwrite to discard it"
        raise RuntimeError(f"{job.parts} {message}")
    return found, info, extras


def _record(job: SurfaceJob, data: dict) -> dict:
    settings = ("seed", "normalization", "ignore_biasbn", "orthogonalize", "loss")
    return {
        "checkpoint": checkpoint_record(job.checkpoint),
        "directions": {
            "kind": job.kind,
            "spec": job.spec,
            "dim": job.dim,
            **{key: getattr(job, key) for key in settings},
        },
        "data": data,
        "dtype": job.dtype,  # eigen directions depend on them
    }


def prepare(job: SurfaceJob, dist: Distributed) -> PreparedSurface:
    """Load the checkpoint and data, share the directions; all that the grid needs."""
    loaded = load_input(job.checkpoint, job.data_spec())
    model, config = loaded.model, loaded.config
    bn_batches = [] if job.bn == "eval" else [x for x, _ in load_batches(config, job.bn_spec())[0]]
    record = _record(job, loaded.data)
    found, info, extras = shared_directions(model, job, record, dist)
    grid = make_grid(job, extras)
    record["directions"].update(info)
    record.update(
        grid={"axes": grid.axes, "shape": grid.shape},
        mode="eval",
        bn={"mode": job.bn, "samples": sum(len(x) for x in bn_batches)},
        model={"name": config["model"], "T": config["T"], "method": config["method"]},
        losses={"tet_lambda": config.get("tet_lambda"), "tet_phi": config.get("tet_phi")},
        chunk_size=job.chunk_size,
        device=str(resolve_device(job.device)),
        # float32 values may differ by a spike flip between these fast paths
        fast_paths={
            "input_cache": job.input_cache,
            "channels_last": job.channels_last,
            "compile": job.compile,
        },
    )
    evaluator = SurfaceEvaluator(
        model,
        found,
        loaded.batches,
        metrics_for(config),
        observer=spike_counter,
        bn_mode=job.bn,
        bn_batches=bn_batches,
        use_input_cache=job.input_cache,
        use_compile=job.compile,
        use_channels_last=job.channels_last,
        dtype=resolve_dtype(job.dtype),
        device=resolve_device(job.device),
    )
    check_chunking(job, grid.num_points)
    store = SurfaceStore(job.parts, grid.num_points, job.chunk_size, fingerprint(record))
    for i, direction in enumerate(found):
        extras.update({f"direction{i}/{name}": t.numpy() for name, t in direction.items()})
    return PreparedSurface(record, evaluator, store, grid, extras)


def check_chunking(job: SurfaceJob, num_points: int) -> None:
    """Refuse to resume a partial surface with another ``--chunk-size`` (its points would be lost).

    Raises:
        ConfigError: If the first chunk file holds another number of points.
    """
    try:
        with np.load(job.parts / "chunk_000000.npz", allow_pickle=False) as data:
            found = len(next(data[key] for key in data.files if key != "_fingerprint"))
    except (OSError, ValueError, EOFError, KeyError, StopIteration):
        return  # no readable first chunk: nothing to lose
    if found != min(job.chunk_size, num_points):
        raise ConfigError(
            f"{job.parts} holds chunks of {found} points; pass --chunk-size {found} to resume "
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


def statistics_rows(job: SurfaceJob, surface: Surface) -> list[list]:
    """Rows of ``STATS_HEADER``: quadratic curvature, basin width, flat share per loss."""
    return [
        [str(job.checkpoint), job.stem.name, metric, key, value]
        for metric in METRICS
        for key, value in surface_statistics(
            surface.axes, surface.values[metric], job.basin_threshold
        ).items()
    ]

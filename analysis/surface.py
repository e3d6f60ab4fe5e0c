"""Loss surface of a trained SNN checkpoint: 1-D/2-D slices of L_SDT, L_TET, accuracy, firing rates.

Every grid point theta = theta* + x d1 (+ y d2) is evaluated once on a fixed, seeded subset of the
data, giving both losses (TET at the run's lambda and phi), the accuracy and the firing rate of
every LIF layer, so the paper's Fig. 2 (SDT/TET minimum x L_SDT/L_TET) needs two runs, not four.
Directions: random Gaussian, filter-normalized (Li et al. 2018; biases and BN zeroed unless
--no-ignore-biasbn); interp:CKPT2 (1-D) or interp:CKPT2,CKPT3 (the plane through three
checkpoints; BN running statistics are interpolated too); pca:RUN_DIR (PCA of the run's
epoch_NNN.pt trajectory, drawn over the contour); eigen (top eigenvectors of the autograd
surrogate Hessian of --loss). A killed run resumes from its chunk files; under
`torchrun --nproc_per_node N` the processes share the grid (gloo) and give the same surface.

Writes <out>/surface_<ckpt>_<kind>_<dim>d.{json,npz} (values, axes, directions, provenance),
..._stats.csv (quadratic curvature, basin width, share of flat steps) and PNG/PDF plots, by
default into <checkpoint's folder>/analysis/. A rerun after a kill resumes: from the chunk
files while points are missing, or, when every point is saved, it only rewrites the statistics
and plots. Changing --chunk-size of a partial surface is refused (pass the old one or --overwrite).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.plots.surfaces import KINDS_2D, save_surface_plots
from analysis.surfaces.compute import (
    STATS_COLUMNS,
    assemble,
    compute,
    prepare,
    statistics_rows,
)
from analysis.surfaces.plan import SurfacePlan, SurfaceSettings
from landscape.surface_io import Surface, load_surface, save_surface
from toolkit.errors import ConfigError
from toolkit.io import write_csv
from training.runs import checkpoint as checkpoints
from training.runs.checkpoint import Checkpoint
from training.runs.distributed import Distributed, close_distributed, init_distributed


def write_outputs(plan: SurfacePlan, surface: Surface) -> list[Path]:
    """The surface, its statistics CSV and the plots."""
    paths = list(save_surface(plan.stem, surface))
    paths.append(write_csv(plan.stats, STATS_COLUMNS, statistics_rows(plan, surface)))
    if plan.settings.plots:
        paths += save_surface_plots(surface, plan.stem)
    return paths


def print_summary(surface: Surface, paths: list[Path], run: dict) -> None:
    """Centre values and the files written, on stdout."""
    centre = tuple(int(np.argmin(np.abs(axis))) for axis in surface.axes)
    keys = [key for key in ("l_sdt", "l_tet", "accuracy", "firing_rate") if key in surface.values]
    text = " ".join(f"{key}={surface.values[key][centre]:.5g}" for key in keys)
    print(
        f"centre: {text} ({run['points_computed']} points computed, "
        f"{run['points_resumed']} resumed, {run['seconds']:.1f} s)"
    )
    print(f"wrote {', '.join(str(path) for path in paths)}")


def run_surface(
    plan: SurfacePlan, centre: Checkpoint, dist: Distributed, quiet: bool, overwrite: bool
) -> None:
    """Compute the surface (this rank's share); rank 0 writes it and drops the chunks."""
    start = time.perf_counter()
    if overwrite and dist.is_main:
        shutil.rmtree(plan.parts, ignore_errors=True)
    dist.barrier()
    prepared = prepare(plan, centre, dist)
    computed, resumed = compute(prepared, dist, quiet)
    dist.barrier()
    if dist.is_main:
        run = {
            "points_computed": computed,
            "points_resumed": resumed,
            "world_size": dist.world,
            "seconds": time.perf_counter() - start,
            "compile": plan.settings.compile,
            "input_layer": prepared.evaluator.input_layer,
        }
        surface = assemble(prepared, run)
        paths = write_outputs(plan, surface)
        shutil.rmtree(plan.parts, ignore_errors=True)
        print_summary(surface, paths, run)


def output_files(plan: SurfacePlan) -> list[Path]:
    """Every file a finished surface has."""
    files = [plan.stem.with_suffix(".json"), plan.stem.with_suffix(".npz"), plan.stats]
    kinds = ["curve"] if plan.settings.dim == 1 else list(KINDS_2D)
    if plan.settings.plots:
        files += [Path(f"{plan.stem}_{kind}.{ext}") for kind in kinds for ext in ("png", "pdf")]
    return files


def check_existing(plan: SurfacePlan, overwrite: bool) -> bool:
    """Refuse a finished surface without --overwrite; True when only its statistics and plots
    are missing (a kill while plotting after the chunks were dropped): then just redraw.

    Raises:
        ConfigError: If the surface is finished and ``overwrite`` is False.
    """
    for stale in plan.out.glob(f".{plan.stem.name}*.tmp"):  # temp files of a killed write
        stale.unlink(missing_ok=True)
    if overwrite or plan.parts.exists():
        return False  # start over, or resume from the chunk files
    if all(path.exists() for path in output_files(plan)):
        raise ConfigError(
            f"{plan.stem.with_suffix('.json')} exists; pass --overwrite or choose another --out"
        )
    return plan.stem.with_suffix(".json").exists() and plan.stem.with_suffix(".npz").exists()


def redraw(plan: SurfacePlan) -> None:
    """Statistics and plots of a surface whose values are saved."""
    surface = load_surface(plan.stem)
    paths = [write_csv(plan.stats, STATS_COLUMNS, statistics_rows(plan, surface))]
    if plan.settings.plots:
        paths += save_surface_plots(surface, plan.stem)
    print(f"all points were saved; redrew {', '.join(str(path) for path in paths)}")


def run(task: Task) -> int:
    """One surface, resumable; shared by the processes of ``torchrun`` (gloo)."""
    if task.data.time_step is not None:
        raise ConfigError("--time-step is not used here: every point records L_SDT and L_TET")
    ends = tuple(checkpoints.read(path) for path in task.settings.others)  # before any work
    plan = SurfacePlan(task.settings, task.data, task.paths[0], task.out, ends)
    if check_existing(plan, task.overwrite):
        redraw(plan)
        return 0
    # The grid is shared over gloo whatever the device: the processes only exchange barriers.
    dist, _ = init_distributed(torch.device("cpu"))
    try:
        run_surface(plan, task.checkpoints[0], dist, task.evaluation.quiet, task.overwrite)
    finally:
        if dist.world > 1:
            close_distributed()
    return 0


COMMAND = CheckpointCommand(
    name="surface",
    doc=__doc__,
    example=(
        "  python analysis/surface.py runs/<run>/last.pt --dim 2 --x -1:1:21 --out results/s\n"
        "  python analysis/surface.py runs/<sdt>/last.pt --dim 1 --directions "
        "interp:runs/<tet>/last.pt\n"
    ),
    run=run,
    settings=SurfaceSettings,
    single=True,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

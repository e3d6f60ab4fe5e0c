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

import argparse
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis import common, plots_surface  # noqa: E402
from analysis.surface_run import (  # noqa: E402
    STATS_HEADER,
    assemble,
    compute,
    prepare,
    statistics_rows,  # noqa: E402
)
from analysis.surfaces import KINDS, SurfaceConfig, SurfaceJob  # noqa: E402
from landscape.surface import Grid, Surface, load_surface, save_surface  # noqa: E402
from training.config import ArgumentParser  # noqa: E402
from training.distributed import Distributed, close_distributed, init_distributed  # noqa: E402
from training.errors import ToolkitError  # noqa: E402


def parse_range(text: str) -> tuple[float, float, int]:
    """``"-1:1:51"`` -> ``(-1.0, 1.0, 51)`` (an argparse type)."""
    try:
        low, high, num = text.split(":")
        value = (float(low), float(high), int(num))
        Grid.linspace(value)
        if value[2] < 3:
            raise ValueError("a surface's statistics need 3 points per axis")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW:HIGH:NUM with LOW < HIGH, NUM >= 3 (e.g. -1:1:51), got {text!r}"
        ) from None
    return value


EPILOG = """examples:
  python analysis/surface.py runs/<run>/last.pt --dim 2 --x -1:1:21 --out results/surface
  python analysis/surface.py runs/<sdt>/last.pt --dim 1 --directions interp:runs/<tet>/last.pt
"""


def join_ranges(argv: list[str]) -> list[str]:
    """``["--x", "-1:1:51"]`` -> ``["--x=-1:1:51"]``: argparse takes ``-1:...`` for an option."""
    joined, i = [], 0
    while i < len(argv):
        if argv[i] in ("--x", "--y") and i + 1 < len(argv) and argv[i + 1][:1] == "-":
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            joined.append(argv[i])
            i += 1
    return joined


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    common.add_checkpoint_args(parser, None, "checkpoint (.pt) at the centre of the surface")
    add(
        "--x",
        type=parse_range,
        metavar="LOW:HIGH:NUM",
        help="x grid (default: -1:1:51; interp -0.5:1.5:51; pca: covering the trajectory)",
    )
    add("--y", type=parse_range, metavar="LOW:HIGH:NUM", help="y grid (default: as --x)")
    common.add_config_args(parser, SurfaceConfig)
    common.add_config_args(parser, common.DataConfig)
    common.add_output_args(parser)
    return parser


def _check(job: SurfaceJob, parser: argparse.ArgumentParser) -> None:
    """``parser.error`` on flags that do not fit together."""
    if job.kind not in KINDS or bool(job.spec) != (job.kind in ("interp", "pca")):
        parser.error(
            "--directions must be random, eigen, interp:CKPT2[,CKPT3] or pca:RUN_DIR, "
            f"got {job.directions!r}"
        )
    for name in ("samples", "bn_samples", "batch_size", "chunk_size"):
        if getattr(job, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(job, name)}")
    if job.kind == "interp" and job.spec.count(",") + 1 != job.dim:
        parser.error(
            f"--dim {job.dim} needs {job.dim} interp checkpoint(s) (interp:CKPT2 for "
            "1-D, interp:CKPT2,CKPT3 for the plane)"
        )
    if job.dim == 1 and job.y is not None:
        parser.error("--y is only used with --dim 2")
    if job.time_step is not None:
        parser.error("--time-step is not used here: every point records L_SDT and L_TET")
    if not job.checkpoint.is_file():
        parser.error(f"checkpoint not found: {job.checkpoint}")


def job_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SurfaceJob:
    """The validated job of the flags (``parser.error`` on bad input), ``--dry-run`` applied."""
    settings = {f.name: getattr(args, f.name) for f in fields(SurfaceJob) if hasattr(args, f.name)}
    out = args.out or args.checkpoint.resolve().parent / "analysis"
    job = SurfaceJob(**{**settings, "out": out})
    _check(job, parser)
    if not args.dry_run:
        return job
    x = (*(job.x or (-1.0, 1.0))[:2], 3)
    y = (*(job.y or x)[:2], 3) if job.dim == 2 else None
    return replace(job, samples=min(job.samples, 32), bn_samples=32, chunk_size=4, x=x, y=y)


def write_outputs(job: SurfaceJob, surface: Surface) -> list[Path]:
    """The surface, its stats CSV and the plots."""
    paths = list(save_surface(job.stem, surface))
    rows = statistics_rows(job, surface)
    paths.append(common.write_csv(job.out / f"{job.stem.name}_stats.csv", STATS_HEADER, rows))
    if job.plots:
        paths += plots_surface.save_surface_plots(surface, job.stem)
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


def run_job(job: SurfaceJob, dist: Distributed, quiet: bool, overwrite: bool) -> None:
    """Compute the surface (this rank's share); rank 0 writes it and drops the chunks."""
    start = time.perf_counter()
    if overwrite and dist.is_main:
        shutil.rmtree(job.parts, ignore_errors=True)
    dist.barrier()
    prepared = prepare(job, dist)
    computed, resumed = compute(prepared, dist, quiet)
    dist.barrier()
    if dist.is_main:
        run = {
            "points_computed": computed,
            "points_resumed": resumed,
            "world_size": dist.world,
            "seconds": time.perf_counter() - start,
            "compile": job.compile,
            "input_layer": prepared.evaluator.input_layer,
        }
        surface = assemble(prepared, run)
        paths = write_outputs(job, surface)
        shutil.rmtree(job.parts, ignore_errors=True)
        print_summary(surface, paths, run)


def output_files(job: SurfaceJob) -> list[Path]:
    """Every file a finished surface has."""
    files = [job.stem.with_suffix(".json"), job.stem.with_suffix(".npz")]
    files.append(job.out / f"{job.stem.name}_stats.csv")
    kinds = ["curve"] if job.dim == 1 else list(plots_surface.KINDS_2D)
    if job.plots:
        files += [Path(f"{job.stem}_{kind}.{ext}") for kind in kinds for ext in ("png", "pdf")]
    return files


def check_existing(job: SurfaceJob, args: argparse.Namespace, parser) -> bool:
    """Refuse a finished surface without --overwrite; True when only its statistics and plots
    are missing (a kill while plotting after the chunks were dropped): then just redraw."""
    for stale in job.out.glob(f".{job.stem.name}*.tmp"):  # temp files of a killed write
        stale.unlink(missing_ok=True)
    if args.overwrite or job.parts.exists():
        return False  # start over, or resume from the chunk files
    if all(path.exists() for path in output_files(job)):
        parser.error(f"{job.stem.with_suffix('.json')} exists; pass --overwrite or another --out")
    return job.stem.with_suffix(".json").exists() and job.stem.with_suffix(".npz").exists()


def redraw(job: SurfaceJob) -> None:
    """Statistics and plots of a surface whose values are saved."""
    surface = load_surface(job.stem)
    rows = statistics_rows(job, surface)
    paths = [common.write_csv(job.out / f"{job.stem.name}_stats.csv", STATS_HEADER, rows)]
    if job.plots:
        paths += plots_surface.save_surface_plots(surface, job.stem)
    print(f"all points were saved; redrew {', '.join(str(path) for path in paths)}")


@common.command
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(join_ranges(sys.argv[1:] if argv is None else list(argv)))
    job = job_from_args(args, parser)
    others = [Path(p) for p in job.spec.split(",")] if job.kind == "interp" else []
    common.check_inputs(parser, [job.checkpoint, *others], job.out)
    if check_existing(job, args, parser):
        redraw(job)
        return 0
    # The grid is shared over gloo whatever the device: the processes only exchange barriers.
    dist, _ = init_distributed(torch.device("cpu"))
    try:
        run_job(job, dist, args.quiet, args.overwrite)
    except (ToolkitError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if dist.world > 1:
            close_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())

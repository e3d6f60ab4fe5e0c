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
default into <checkpoint's folder>/analysis/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402

from analysis import common  # noqa: E402
from analysis.common import option  # noqa: E402
from analysis import plots_surface  # noqa: E402
from landscape import HessianOperator, to_plain, top_eigenvalues  # noqa: E402
from landscape import directions as dirs  # noqa: E402
from landscape.sharpness import surface_statistics  # noqa: E402
from landscape.surface import (  # noqa: E402
    BN_MODES,
    Grid,
    Surface,
    SurfaceEvaluator,
    SurfaceStore,
    iter_surface,
    save_surface,
)
from training import checkpoint as checkpoints  # noqa: E402
from training.data import TensorLoader, dataset_for  # noqa: E402
from training.config import ArgumentParser  # noqa: E402
from training.errors import ToolkitError  # noqa: E402
from training.losses import loss_terms  # noqa: E402
from training.spikes import spike_counter  # noqa: E402

KINDS = ("random", "interp", "pca", "eigen")
LOSSES = ("l_sdt", "l_tet")


def parse_range(text: str) -> tuple[float, float, int]:
    """``"-1:1:51"`` -> ``(-1.0, 1.0, 51)`` (an argparse type)."""
    try:
        low, high, num = text.split(":")
        value = (float(low), float(high), int(num))
        Grid.linspace(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW:HIGH:NUM with LOW < HIGH, NUM >= 1 (e.g. -1:1:51), got {text!r}"
        ) from None
    return value


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


@dataclass(frozen=True)
class SurfaceConfig:
    """Flags of this command besides the checkpoint, the grid and the shared data/output flags."""

    # fmt: off
    dim: int = option(2, "1-D or 2-D surface", choices=(1, 2))
    directions: str = option("random", "random | interp:CKPT2[,CKPT3] | pca:RUN_DIR | eigen")
    normalization: str = option("filter", "normalization of random directions",
                                choices=dirs.NORMALIZATIONS)
    ignore_biasbn: bool = option(True, "zero random directions on 1-D tensors (biases, BN)")
    orthogonalize: bool = option(False, "Gram-Schmidt the second random direction")
    bn: str = option("eval", "BN statistics: the checkpoint's, or recomputed at every point",
                     choices=BN_MODES)
    bn_samples: int = option(256, "training samples for --bn recompute")
    basin_threshold: float = option(0.1, "loss increase bounding the basin width (stats CSV)")
    chunk_size: int = option(32, "grid points per chunk file: the unit of resume and sharing")
    compile: bool = option(False, "torch.compile the forward (pays off on large grids only)")
    input_cache: bool = option(True, "compute the input layer once per batch (exact)")
    channels_last: bool = option(True, "NHWC weights and inputs (pooling is faster on CPU)")
    plots: bool = option(True, "write PNG and PDF plots")
    # fmt: on


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("checkpoint", type=Path, help="checkpoint .pt at the centre of the surface")
    add(
        "--x",
        type=parse_range,
        metavar="LOW:HIGH:NUM",
        help="x grid (default: -1:1:51; interp -0.5:1.5:51; pca: covering the trajectory)",
    )
    add("--y", type=parse_range, metavar="LOW:HIGH:NUM",
        help="y grid (default: as --x)")  # fmt: skip
    common.add_config_args(parser, SurfaceConfig)
    common.add_config_args(parser, common.DataConfig)
    common.add_output_args(parser)
    return parser


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Validate flags (``parser.error`` on bad input) and apply ``--dry-run``."""
    args.kind, _, args.spec = args.directions.partition(":")
    if args.kind not in KINDS or bool(args.spec) != (args.kind in ("interp", "pca")):
        parser.error(f"--directions must be random, eigen, interp:CKPT2[,CKPT3] or pca:RUN_DIR, "
                     f"got {args.directions!r}")  # fmt: skip
    for name in ("samples", "bn_samples", "batch_size", "chunk_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.kind == "interp" and args.spec.count(",") + 1 != args.dim:
        parser.error(f"--dim {args.dim} needs {args.dim} interp checkpoint(s) (interp:CKPT2 for "
                     "1-D, interp:CKPT2,CKPT3 for the plane)")  # fmt: skip
    if args.dim == 1 and args.y is not None:
        parser.error("--y is only used with --dim 2")
    if args.time_step is not None:
        parser.error("--time-step is not used here: every point records L_SDT and L_TET")
    if not args.checkpoint.is_file():
        parser.error(f"checkpoint not found: {args.checkpoint}")
    if args.dry_run:
        args.samples, args.bn_samples, args.chunk_size = min(args.samples, 32), 32, 4
        args.x = (*(args.x or (-1.0, 1.0))[:2], 3)
        args.y = (*(args.y or args.x)[:2], 3) if args.dim == 2 else None
    args.out = args.out or args.checkpoint.resolve().parent / "analysis"
    args.stem = args.out / f"surface_{args.checkpoint.stem}_{args.kind}_{args.dim}d"
    args.parts = args.out / f"{args.stem.name}.parts"


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
        return {"l_sdt": terms["l_sdt"] * n, "l_tet": terms["l_tet"] * n,
                "accuracy": terms["correct"]}  # fmt: skip


def metrics_for(config: dict) -> SurfaceMetrics:
    """The metrics of a checkpoint's config (its TET lambda and phi)."""
    return SurfaceMetrics(config.get("tet_lambda", 0.05), config.get("tet_phi", 1.0))


def load_batches(config: dict, split: str, samples: int, batch_size: int, seed: int):
    """A fixed, seeded subset of one split as ``(x, y)`` batches, and its record."""
    dataset = dataset_for(config)
    x, y = (
        (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)
    )
    indices = common.sample_indices(len(y), samples, seed)
    record = {"dataset": config["dataset"], "split": split, "num_samples": len(indices)}
    record.update(seed=seed, batch_size=batch_size, indices_sha256=common.tensor_digest(indices))
    return list(TensorLoader(x[indices], y[indices], batch_size).batches()), record


def _state(model: torch.nn.Module, parameters_only: bool = False) -> dict[str, torch.Tensor]:
    named = model.named_parameters() if parameters_only else model.state_dict().items()
    return {name: tensor.detach() for name, tensor in named}


def _float64(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Differences of float32 weights are exact in float64, so centre + 1 * d is the end point.
    return {name: t.double() if t.is_floating_point() else t for name, t in state.items()}


def random_directions(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list, dict]:
    """``dim`` seeded Gaussian directions, normalized; their cosine."""
    generator = torch.Generator().manual_seed(args.seed)
    weights = _state(model, parameters_only=True)
    found = [
        dirs.random_direction(weights, generator, args.normalization, args.ignore_biasbn)
        for _ in range(args.dim)
    ]
    info = {"normalization": args.normalization, "ignore_biasbn": args.ignore_biasbn}
    if args.dim == 2:
        info["cosine"] = dirs.cosine_similarity(*found)
        if args.orthogonalize:
            found[1] = dirs.orthogonalize(found[1], found[0])
            info["cosine_orthogonalized"] = dirs.cosine_similarity(*found)
    return found, info


def interp_directions(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list, dict]:
    """``CKPT_i - CKPT`` for the checkpoints of ``interp:`` (parameters and BN statistics)."""
    others = [Path(path) for path in args.spec.split(",")]
    start = _float64(_state(model))
    found = [dirs.difference(_float64(_state(checkpoints.load(p)[0])), start) for p in others]
    info = {"checkpoints": [str(p) for p in others], "includes_buffers": True}
    return found, {**info, "sha256": [common.file_sha256(p) for p in others]}


def pca_directions(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list, dict, dict]:
    """PCA of ``RUN_DIR/epoch_*.pt`` around the checkpoint, and the projected trajectory."""
    files = sorted(Path(args.spec).glob("epoch_*.pt"))
    if len(files) < args.dim + 1:
        raise ValueError(
            f"pca needs >= {args.dim + 1} epoch_NNN.pt files in {args.spec}, found "
            f"{len(files)} (train with --save-every 1)"
        )
    weights = _state(model, parameters_only=True)
    states = [checkpoints.load_raw(path)["model"]["state_dict"] for path in files]
    result = dirs.pca_directions([{n: s[n] for n in weights} for s in states], weights, args.dim)
    info = {"run_dir": args.spec, "epochs": [path.name for path in files]}
    info["explained_variance_ratio"] = result.explained_variance_ratio.tolist()
    return result.directions, info, {"trajectory": result.projection.numpy()}


def eigen_directions(args: argparse.Namespace) -> tuple[list, dict]:
    """Top ``dim`` eigenvectors of the autograd surrogate Hessian of ``--loss``."""
    loaded = common.load_objective(
        args.checkpoint,
        loss=args.loss,
        split=args.split,
        samples=args.samples,
        batch_size=args.batch_size,
        device=common.resolve_device(args.device),
        dtype=common.resolve_dtype(args.dtype),
        seed=args.seed,
    )
    generator = torch.Generator().manual_seed(args.seed)
    result = top_eigenvalues(HessianOperator(loaded.objective), args.dim, generator=generator)
    found = dirs.eigen_directions(result.eigenvectors.cpu(), loaded.objective.shapes)
    return found, {"loss": loaded.loss_name, "curvature": HessianOperator.curvature,
                   **result.to_dict()}  # fmt: skip


def build_directions(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list, dict, dict]:
    """Directions of ``--directions``, their record and extra arrays (the PCA trajectory)."""
    if args.kind == "pca":
        found, info, extras = pca_directions(model, args)
    elif args.kind == "eigen":
        (found, info), extras = eigen_directions(args), {}
    else:
        build = random_directions if args.kind == "random" else interp_directions
        (found, info), extras = build(model, args), {}
    return found, {**info, "norms": [dirs.direction_norm(d) for d in found]}, extras


def _fingerprint(record: dict) -> str:
    return hashlib.sha256(json.dumps(to_plain(record), sort_keys=True).encode()).hexdigest()


def shared_directions(model, args: argparse.Namespace, record: dict, world_size: int, rank: int):
    """Rank 0 builds the directions once into the parts folder (or reuses them); all ranks read."""
    path, digest = args.parts / "directions.npz", _fingerprint(record)
    if rank == 0 and not path.is_file():
        found, info, extras = build_directions(model, args)
        dirs.save_directions(path, found, {"fingerprint": digest, **info}, extras)
    _barrier(world_size)
    found, info, extras = dirs.load_directions(path)
    if info.pop("fingerprint") != digest:
        message = "holds a partial surface of other settings; pass --overwrite to discard it"
        raise RuntimeError(f"{args.parts} {message}")
    return found, info, extras


def make_grid(args: argparse.Namespace, extras: dict) -> Grid:
    """The grid of ``--x``/``--y`` or the default of the direction kind."""
    default = (-0.5, 1.5, 51) if args.kind == "interp" else (-1.0, 1.0, 51)
    ranges = [args.x or default, args.y or args.x or default][: args.dim]
    for axis in range(args.dim if args.kind == "pca" and not args.x else 0):
        track = extras["trajectory"][:, axis]
        low, high = min(track.min(), 0.0), max(track.max(), 0.0)
        step = 1.4 * (high - low) / 50 or 0.04
        first = -np.ceil((0.2 * (high - low) - low) / step)  # so that 0 is a grid point
        ranges[axis] = (float(first * step), float((first + 50) * step), 51)
    return Grid.linspace(*ranges)


def _distributed() -> tuple[int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world_size) if world_size > 1 else (0, 1)


def _barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def _data(config: dict, args: argparse.Namespace) -> tuple[list, list, dict]:
    batches, data = load_batches(config, args.split, args.samples, args.batch_size, args.seed)
    if args.bn == "eval":
        return batches, [], data
    bn = load_batches(config, "train", args.bn_samples, args.batch_size, args.seed + 1)
    return batches, [x for x, _ in bn[0]], data


def prepare(args: argparse.Namespace, rank: int, world_size: int) -> dict:
    """Load the checkpoint and data, share the directions; all that the grid needs."""
    model, config = checkpoints.load(args.checkpoint)
    batches, bn_batches, data = _data(config, args)
    settings = ("seed", "normalization", "ignore_biasbn", "orthogonalize", "loss")
    record = {
        "checkpoint": {"path": str(args.checkpoint), "sha256": common.file_sha256(args.checkpoint)},
        "directions": {"kind": args.kind, "spec": args.spec, "dim": args.dim,
                       **{key: getattr(args, key) for key in settings}},
        "data": data, "dtype": args.dtype,  # eigen directions depend on them
    }  # fmt: skip
    found, info, extras = shared_directions(model, args, record, world_size, rank)
    grid = make_grid(args, extras)
    record["directions"].update(info)
    record.update(
        grid={"axes": grid.axes, "shape": grid.shape}, mode="eval",
        bn={"mode": args.bn, "samples": sum(len(x) for x in bn_batches)},
        model={"name": config["model"], "T": config["T"], "method": config["method"]},
        losses={"tet_lambda": config.get("tet_lambda"), "tet_phi": config.get("tet_phi")},
        chunk_size=args.chunk_size, device=str(common.resolve_device(args.device)),
        fast_paths={"input_cache": args.input_cache, "channels_last": args.channels_last,
                    "compile": args.compile},  # float32 values may differ by a spike flip
    )  # fmt: skip
    evaluator = SurfaceEvaluator(
        model, found, batches, metrics_for(config), observer=spike_counter, bn_mode=args.bn,
        bn_batches=bn_batches, use_input_cache=args.input_cache, use_compile=args.compile,
        use_channels_last=args.channels_last,
        dtype=common.resolve_dtype(args.dtype), device=common.resolve_device(args.device),
    )  # fmt: skip
    store = SurfaceStore(args.parts, grid.num_points, args.chunk_size, _fingerprint(record))
    for i, direction in enumerate(found):
        extras.update({f"direction{i}/{name}": t.numpy() for name, t in direction.items()})
    return dict(record=record, evaluator=evaluator, store=store, grid=grid, extras=extras)


def compute(job: dict, rank: int, world_size: int, quiet: bool) -> tuple[int, int]:
    """This rank's share of the grid; returns ``(points computed, points resumed)``."""
    store, counts, coords = job["store"], [0, 0], job["grid"].coordinates()
    owned = sum(len(store.indices(c)) for c in range(rank, store.num_chunks, world_size))
    with tqdm(total=owned, desc="surface", disable=True if quiet or rank else None) as bar:
        for _, size, resumed in iter_surface(job["evaluator"], coords, store, rank, world_size):
            counts[int(resumed)] += size
            bar.update(size)
    return counts[0], counts[1]


def write_outputs(job: dict, args: argparse.Namespace, run: dict) -> tuple[Surface, list[Path]]:
    """Assemble the chunks; write the surface, its stats CSV and the plots; drop the chunks."""
    grid = job["grid"]
    values = {key: v.reshape(grid.shape) for key, v in job["store"].read().items()}
    metadata = {**job["record"], "run": run, "provenance": common.provenance()}
    surface = Surface([np.asarray(axis) for axis in grid.axes], values, metadata, job["extras"])
    paths = list(save_surface(args.stem, surface))
    rows = [
        [str(args.checkpoint), args.stem.name, metric, key, value]
        for metric in LOSSES
        for key, value in surface_statistics(
            surface.axes, values[metric], args.basin_threshold
        ).items()
    ]
    header = ["checkpoint", "surface", "metric", "statistic", "value"]
    paths.append(common.write_csv(args.out / f"{args.stem.name}_stats.csv", header, rows))
    if args.plots:
        paths += plots_surface.save_surface_plots(surface, args.stem)
    shutil.rmtree(args.parts, ignore_errors=True)
    return surface, paths


def print_summary(surface: Surface, paths: list[Path], run: dict) -> None:
    """Centre values and the files written, on stdout."""
    centre = tuple(int(np.argmin(np.abs(axis))) for axis in surface.axes)
    keys = [key for key in ("l_sdt", "l_tet", "accuracy", "firing_rate") if key in surface.values]
    text = " ".join(f"{key}={surface.values[key][centre]:.5g}" for key in keys)
    print(f"centre: {text} ({run['points_computed']} points computed, "
          f"{run['points_resumed']} resumed, {run['seconds']:.1f} s)")  # fmt: skip
    print(f"wrote {', '.join(str(path) for path in paths)}")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(join_ranges(sys.argv[1:] if argv is None else list(argv)))
    check_args(args, parser)
    if args.stem.with_suffix(".json").exists() and not args.overwrite:
        parser.error(f"{args.stem.with_suffix('.json')} exists; pass --overwrite or another --out")
    rank, world_size = _distributed()
    start = time.perf_counter()
    try:
        if args.overwrite and rank == 0:
            shutil.rmtree(args.parts, ignore_errors=True)
        _barrier(world_size)
        job = prepare(args, rank, world_size)
        computed, resumed = compute(job, rank, world_size, args.quiet)
        _barrier(world_size)
        if rank == 0:
            run = {"points_computed": computed, "points_resumed": resumed, "world_size": world_size,
                   "seconds": time.perf_counter() - start, "compile": args.compile,
                   "input_layer": job["evaluator"].input_layer}  # fmt: skip
            print_summary(*write_outputs(job, args, run), run)
    except (ToolkitError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())

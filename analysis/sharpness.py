"""Sharpness of trained SNN checkpoints, for L_SDT and L_TET.

Two measures per checkpoint, on a fixed, seeded subset of the data (eval mode, the checkpoint's BN
statistics):

- epsilon-sharpness (Keskar et al. 2017): the largest loss increase found in the box
  |y_i| <= eps (|x_i| + 1) by a few projected sign-gradient ascent steps along the surrogate
  gradient, as 100 * (L_max - L) / (1 + L) (a lower bound of the true maximum);
- the increase of L_SDT, L_TET (and the change of accuracy) at radius r along --draws random
  filter-normalized directions (Li et al. 2018; biases and BN not moved): mean, std, stderr.

Writes <out>/sharpness.csv (long format, one row per checkpoint, measure, metric and
epsilon or radius) and sharpness.json (the same plus settings and provenance), by default into
<first checkpoint's folder>/analysis/. Surface statistics (quadratic curvature, basin width) come
with every surface from analysis/surface.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from analysis import common  # noqa: E402
from analysis.surface import load_batches, metrics_for  # noqa: E402
from training.spikes import spike_counter  # noqa: E402
from landscape import save_json  # noqa: E402
from landscape.directions import random_direction  # noqa: E402
from landscape.sharpness import epsilon_sharpness, perturbation_sharpness  # noqa: E402
from landscape.surface import SurfaceEvaluator  # noqa: E402
from training import checkpoint as checkpoints  # noqa: E402
from training.config import ArgumentParser  # noqa: E402
from training.errors import ToolkitError  # noqa: E402

HEADER = ["checkpoint", "method", "measure", "metric", "parameter", "value", "std", "stderr", "n"]


SETTINGS = ("epsilon", "ascent_steps", "step_fraction", "radius", "draws")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint .pt files")
    add = parser.add_argument
    # fmt: off
    add("--epsilon", type=float, nargs="+", default=[1e-3, 5e-4],
        help="box radii of epsilon-sharpness (default: %(default)s)")
    add("--ascent-steps", type=int, default=10,
        help="projected gradient-ascent steps per epsilon (default: %(default)s)")
    add("--step-fraction", type=float, default=0.25,
        help="ascent step as a fraction of the box half-width (default: %(default)s)")
    add("--radius", type=float, nargs="+", default=[0.05, 0.1, 0.25, 0.5],
        help="radii of the random perturbations, in filter units (default: %(default)s)")
    add("--draws", type=int, default=8, help="random directions per radius (default: %(default)s)")
    # fmt: on
    common.add_config_args(parser, common.DataConfig)
    common.add_output_args(parser)
    return parser


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.draws < 1 or args.ascent_steps < 1 or args.samples < 1:
        parser.error("--draws, --ascent-steps and --samples must be >= 1")
    if min(args.epsilon) <= 0 or min(args.radius) <= 0 or args.step_fraction <= 0:
        parser.error("--epsilon, --radius and --step-fraction must be > 0")
    if args.time_step is not None or args.loss != "checkpoint":
        parser.error("sharpness.py measures both L_SDT and L_TET; drop --time-step / --loss")
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        parser.error(f"checkpoint not found: {', '.join(missing)}")
    if args.dry_run:
        args.samples, args.draws, args.ascent_steps = min(args.samples, 32), 2, 2
        args.epsilon, args.radius = args.epsilon[:1], args.radius[:1]


def _loader_options(args: argparse.Namespace) -> dict:
    return {"split": args.split, "samples": args.samples, "batch_size": args.batch_size,
            "device": common.resolve_device(args.device), "seed": args.seed,
            "dtype": common.resolve_dtype(args.dtype)}  # fmt: skip


def epsilon_rows(path: Path, method: str, args: argparse.Namespace) -> list[list]:
    """Epsilon-sharpness of L_SDT and L_TET for every epsilon."""
    rows = []
    for loss in ("sdt", "tet"):
        objective = common.load_objective(path, loss=loss, **_loader_options(args)).objective
        for epsilon in args.epsilon:
            generator = torch.Generator().manual_seed(args.seed)
            result = epsilon_sharpness(objective, epsilon, args.ascent_steps, args.step_fraction,
                                       generator)  # fmt: skip
            rows.append([str(path), method, "epsilon_sharpness", f"l_{loss}", epsilon,
                         result.value, "", "", 1])  # fmt: skip
    return rows


def perturbation_rows(path: Path, args: argparse.Namespace) -> tuple[str, list[list]]:
    """Mean increase of every metric at each radius over ``--draws`` random directions."""
    model, config = checkpoints.load(path)
    batches, _ = load_batches(config, args.split, args.samples, args.batch_size, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    weights = {name: p.detach() for name, p in model.named_parameters()}
    found = [random_direction(weights, generator) for _ in range(args.draws)]
    evaluator = SurfaceEvaluator(
        model, found, batches, metrics_for(config), observer=spike_counter,
        dtype=common.resolve_dtype(args.dtype),
        device=common.resolve_device(args.device),
    )  # fmt: skip
    rows = []
    for metric, results in perturbation_sharpness(evaluator, args.radius).items():
        for r in results:
            rows.append([str(path), config["method"], "random_perturbation", metric, r.radius,
                         r.mean, r.std, r.stderr, len(r.increases)])  # fmt: skip
    return config["method"], rows


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    out = args.out or args.checkpoints[0].resolve().parent / "analysis"
    paths = [out / "sharpness.csv", out / "sharpness.json"]
    existing = common.existing_outputs(paths)
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists; pass --overwrite or choose another --out")
    rows = []
    try:
        for path in args.checkpoints:
            method, perturbation = perturbation_rows(path, args)
            rows += epsilon_rows(path, method, args) + perturbation
    except (ToolkitError, ValueError, RuntimeError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    common.write_csv(paths[0], HEADER, rows)
    settings = {key: getattr(args, key) for key in SETTINGS}
    save_json(paths[1], {"kind": "sharpness", "format_version": 1, "settings": settings,
                         "data": {k: str(v) for k, v in _loader_options(args).items()},
                         "rows": [dict(zip(HEADER, row)) for row in rows],
                         "provenance": common.provenance()})  # fmt: skip
    for row in rows:
        print(f"{Path(row[0]).parent.name[:40]:<40} {row[2]:<20} {row[3]:<16} {row[4]:<8g} "
              f"{row[5]:.4g}")  # fmt: skip
    print(f"wrote {paths[0]}, {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

from analysis import common  # noqa: E402
from analysis.inputs import DataSpec, resolve_dtype  # noqa: E402
from analysis.sharpness_measures import HEADER, SharpnessJob, epsilon_rows, perturbation_rows  # noqa: E402  # noqa: E402
from landscape import save_json  # noqa: E402
from training.config import ArgumentParser  # noqa: E402
from training.errors import ToolkitError  # noqa: E402

EPILOG = """example:
  python analysis/sharpness.py runs/*/last.pt --radius 0.1 0.5 --draws 8 --out results/sharpness
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_checkpoint_args(parser)
    add = parser.add_argument
    add(
        "--epsilon",
        type=float,
        nargs="+",
        default=[1e-3, 5e-4],
        help="box radii of epsilon-sharpness (default: %(default)s)",
    )
    add(
        "--ascent-steps",
        type=int,
        default=10,
        help="projected gradient-ascent steps per epsilon (default: %(default)s)",
    )
    add(
        "--step-fraction",
        type=float,
        default=0.25,
        help="ascent step as a fraction of the box half-width (default: %(default)s)",
    )
    add(
        "--radius",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.25, 0.5],
        help="radii of the random perturbations, in filter units (default: %(default)s)",
    )
    add("--draws", type=int, default=8, help="random directions per radius (default: %(default)s)")
    common.add_config_args(parser, common.DataConfig)
    common.add_output_args(parser)
    return parser


def job_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SharpnessJob:
    """The validated settings of the flags (``parser.error`` on bad input), --dry-run applied."""
    for name in ("draws", "ascent_steps", "samples", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.epsilon) <= 0 or min(args.radius) <= 0 or args.step_fraction <= 0:
        parser.error("--epsilon, --radius and --step-fraction must be > 0")
    if args.time_step is not None or args.loss != "checkpoint":
        parser.error("sharpness.py measures both L_SDT and L_TET; drop --time-step / --loss")
    missing = [str(path) for path in args.checkpoints if not path.is_file()]
    if missing:
        parser.error(f"checkpoint not found: {', '.join(missing)}")
    dry = args.dry_run
    return SharpnessJob(
        epsilon=tuple(args.epsilon[:1] if dry else args.epsilon),
        ascent_steps=2 if dry else args.ascent_steps,
        step_fraction=args.step_fraction,
        radius=tuple(args.radius[:1] if dry else args.radius),
        draws=2 if dry else args.draws,
        data=DataSpec(
            args.split, min(args.samples, 32) if dry else args.samples, args.seed, args.batch_size
        ),
        device=common.resolve_device(args.device),
        dtype=resolve_dtype(args.dtype),
    )


@common.command
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    job = job_from_args(args, parser)
    out = args.out or args.checkpoints[0].resolve().parent / "analysis"
    paths = [out / "sharpness.csv", out / "sharpness.json"]
    existing = common.existing_outputs(paths)
    if existing and not args.overwrite:
        parser.error(f"{existing[0]} exists; pass --overwrite or choose another --out")
    common.check_inputs(parser, args.checkpoints, out)
    rows, total = [], 2 * len(args.checkpoints)
    try:
        with common.Progress(total, "sharpness", "measure", args.quiet, every=5.0) as bar:
            for path in args.checkpoints:
                method, perturbation = perturbation_rows(path, job)
                bar.update(1)
                rows += epsilon_rows(path, method, job) + perturbation
                bar.update(1)
    except (ToolkitError, ValueError, RuntimeError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    common.write_csv(paths[0], HEADER, rows)
    save_json(
        paths[1],
        {
            "kind": "sharpness",
            "format_version": 1,
            "settings": job.settings(),
            "data": job.data_record(),
            "rows": [dict(zip(HEADER, row)) for row in rows],
            "provenance": common.provenance(),
        },
    )
    for row in rows:
        print(
            f"{Path(row[0]).parent.name[:40]:<40} {row[2]:<20} {row[3]:<16} {row[4]:<8g} "
            f"{row[5]:.4g}"
        )
    print(f"wrote {paths[0]}, {paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

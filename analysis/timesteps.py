"""Temporal scalability (TET Fig. 4A): evaluate the same weights at several numbers of time steps.

For each checkpoint and each T, the static images are repeated T times and the model is
evaluated in eval mode without retraining: accuracy, L_SDT, L_TET (at the checkpoint's lambda and
phi) and the mean firing rate. Writes timesteps.csv (long format: one row per checkpoint and T).

--split defaults to train, as in every analysis command; the paper's Fig. 4A (and the demo)
evaluates the test split: pass --split test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from analysis import common  # noqa: E402
from analysis.inputs import DataSpec  # noqa: E402
from analysis.temporal import COLUMNS, evaluate_timesteps  # noqa: E402
from training.config import ArgumentParser  # noqa: E402

EPILOG = """example:
  python analysis/timesteps.py runs/*/last.pt --split test --T 1 2 4 8 --out results/timesteps
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_checkpoint_args(parser)
    add = parser.add_argument
    add(
        "--T",
        nargs="+",
        type=int,
        default=list(range(1, 9)),
        help="time steps to evaluate (default: %(default)s)",
    )
    add(
        "--samples",
        type=int,
        default=None,
        help="a seeded subset of the split (default: every sample, in order)",
    )
    exclude = ("loss", "time_step", "samples", "dtype")
    common.add_config_args(parser, common.DataConfig, exclude=exclude)
    common.add_output_args(parser)
    return parser


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Flags, checkpoints and output folder before any work; returns the output file."""
    if min(args.T) < 1:
        parser.error(f"every --T must be >= 1, got {min(args.T)}")
    for name in ("samples", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    out = args.out or args.checkpoints[0].parent / "analysis"
    target = out / "timesteps.csv"
    if target.exists() and not args.overwrite:
        parser.error(f"{target} exists; pass --overwrite or choose another --out")
    common.check_inputs(parser, args.checkpoints, out)
    return target


@common.command
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    target = check(args, parser)
    steps, samples = args.T, args.samples
    if args.dry_run:
        steps, samples = steps[:2], min(samples or 32, 32)
    spec = DataSpec(args.split, samples, args.seed, args.batch_size)
    device, rows = common.resolve_device(args.device), []
    with common.Progress(len(args.checkpoints), "timesteps", "checkpoint", args.quiet, 5.0) as bar:
        for path in args.checkpoints:
            with torch.inference_mode():
                rows += evaluate_timesteps(path, steps, spec, device)
            bar.update(1)
    common.write_csv(target, COLUMNS, rows)
    print(f"{'method':<7}{'train T':>8}{'T':>4}{'acc':>8}{'L_SDT':>9}{'L_TET':>9}")
    for row in rows:
        print(
            f"{row[2].upper():<7}{row[3]:>8}{row[4]:>4}{row[6]:>8.4f}{row[7]:>9.4f}{row[8]:>9.4f}"
        )
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

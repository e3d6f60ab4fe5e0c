"""Gradient-momentum statistics of SDT and TET (the paper's gradient re-weighting argument).

For each checkpoint: per-time-step error-term norms (SDT's shared S(mean O) - y vs TET's own
S(O(t)) - y), the per-step gradient parts g_t (norms and cosine matrix), total gradient norms per
layer, output spread over time and per-step accuracy, under both losses at the same weights, on
the fixed training subset the trainer logs every epoch. For each run directory: the statistics
logged during training (gradient_stats.csv), or recomputed from its epoch_NNN.pt files with
--recompute. Writes momentum.csv (long format; time steps t are 0-based, as in
gradient_stats.csv and in the plots) and PNG/PDF plots.

There is no --split or --seed: the statistics are always on the trainer's fixed training subset
(seed 0), so that recomputed values compare with the logged ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from analysis import common  # noqa: E402
from analysis.momentum_stats import COLUMNS, checkpoint_rows, run_rows, summarize  # noqa: E402
from analysis.plots_momentum import save_momentum_figures  # noqa: E402
from training.config import ArgumentParser  # noqa: E402

__all__ = ["build_parser", "main"]

EPILOG = """examples:
  python analysis/momentum.py runs/<sdt run> runs/<tet run> --out results/momentum
  python analysis/momentum.py runs/<run>/last.pt --samples 256 --device cpu
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_checkpoint_args(parser, help="checkpoints (.pt) and/or run directories")
    add = parser.add_argument
    add(
        "--samples",
        type=int,
        default=None,
        help="training samples (default: the run's stats_samples)",
    )
    add(
        "--recompute",
        action="store_true",
        help="for run directories: recompute from epoch_NNN.pt files",
    )
    add("--no-plots", action="store_true", help="only write the CSV")
    common.add_config_args(parser, common.DataConfig, exclude=EXCLUDED)
    common.add_output_args(parser)
    return parser


# Shared flags that do not apply: the data are the trainer's fixed subset (see the docstring).
EXCLUDED = ("loss", "time_step", "samples", "split", "batch_size", "dtype", "seed")


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Flags, inputs and output folder before any work; returns the output folder."""
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples must be >= 1, got {args.samples}")
    files, first = [], args.checkpoints[0]
    for path in args.checkpoints:
        if path.is_dir():
            files.append(path / "last.pt")
            logged = path / "gradient_stats.csv"
            if not args.recompute and not logged.is_file():
                parser.error(f"{logged} not found; train with --gradient-stats, or --recompute")
        else:
            files.append(path)
    out = args.out or (first if first.is_dir() else first.parent) / "analysis"
    target = out / "momentum.csv"
    if target.exists() and not args.overwrite:
        parser.error(f"{target} exists; pass --overwrite or choose another --out")
    common.check_inputs(parser, files, out)
    return out


@common.command
def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = check(args, parser)
    samples = min(args.samples or 32, 32) if args.dry_run else args.samples
    device, rows = common.resolve_device(args.device), []
    with common.Progress(len(args.checkpoints), "momentum", "input", args.quiet, 5.0) as bar:
        for path in args.checkpoints:
            if path.is_dir():
                rows += run_rows(path, args.recompute, samples, device)
            else:
                rows += checkpoint_rows(path, samples, device)
            bar.update(1)
    target = common.write_csv(
        out / "momentum.csv", COLUMNS, [[r[c] for c in COLUMNS] for r in rows]
    )
    frame = pd.read_csv(target, keep_default_na=False)
    summary = summarize(frame)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.groupby(["source", "method"]).tail(1).to_string(index=False))
    if not args.no_plots:
        save_momentum_figures(frame, out)
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

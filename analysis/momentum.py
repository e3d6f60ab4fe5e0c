"""Gradient-momentum statistics of SDT and TET (the paper's gradient re-weighting argument).

For each checkpoint: per-time-step error-term norms (SDT's shared S(mean O) - y vs TET's own
S(O(t)) - y), the per-step gradient parts g_t (norms and cosine matrix), total gradient norms per
layer, output spread over time and per-step accuracy, under both losses at the same weights, on
the fixed training subset the trainer logs every epoch. For each run directory: the statistics
logged during training (gradient_stats.csv), or recomputed from its epoch_NNN.pt files with
--recompute. Writes momentum.csv (long format) and PNG/PDF plots.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.common import write_csv
from analysis.momentum_stats import COLUMNS, checkpoint_rows, run_rows, summarize
from analysis.plots_momentum import save_momentum_figures
from landscape.io import resolve_device
from training.config import ArgumentParser
from training.errors import ToolkitError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("inputs", nargs="+", help="checkpoints (.pt) and/or run directories")
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training samples (default: the run's stats_samples)",
    )
    parser.add_argument(
        "--recompute",
        action="store_true",
        help="for run directories: recompute from epoch_NNN.pt files",
    )
    parser.add_argument("--device", default="cpu", help="(default: %(default)s)")
    parser.add_argument("--out", help="output folder (default: next to the first input)")
    parser.add_argument("--no-plots", action="store_true", help="only write the CSV")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device, rows = resolve_device(args.device), []
        for path in map(Path, args.inputs):
            if path.is_dir():
                rows += run_rows(path, args.recompute, args.samples, device)
            else:
                rows += checkpoint_rows(path, args.samples, device)
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    first = Path(args.inputs[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "analysis"
    target = write_csv(out / "momentum.csv", COLUMNS, [[r[c] for c in COLUMNS] for r in rows])
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

"""Temporal scalability (TET Fig. 4A): evaluate the same weights at several numbers of time steps.

For each checkpoint and each T, the static test images are repeated T times and the model is
evaluated in eval mode without retraining: accuracy, L_SDT, L_TET (at the checkpoint's lambda and
phi) and the mean firing rate. Writes timesteps.csv (long format: one row per checkpoint and T).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from analysis.common import write_csv
from analysis.temporal import COLUMNS, evaluate_timesteps
from landscape.io import resolve_device
from training.config import ArgumentParser
from training.errors import ToolkitError


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files (.pt)")
    parser.add_argument(
        "--T",
        nargs="+",
        type=int,
        default=list(range(1, 9)),
        help="time steps to evaluate (default: %(default)s)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="data split (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="(default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    parser.add_argument("--out", help="output folder (default: next to the first checkpoint)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.T) < 1:
        print("error: every --T must be >= 1", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
        rows = []
        for path in map(Path, args.checkpoints):
            with torch.inference_mode():
                rows += evaluate_timesteps(path, args.T, args.split, args.batch_size, device)
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.checkpoints[0]).parent / "analysis"
    target = write_csv(out / "timesteps.csv", COLUMNS, rows)
    print(f"{'method':<7}{'train T':>8}{'T':>4}{'acc':>8}{'L_SDT':>9}{'L_TET':>9}")
    for row in rows:
        print(
            f"{row[2].upper():<7}{row[3]:>8}{row[4]:>4}{row[6]:>8.4f}{row[7]:>9.4f}{row[8]:>9.4f}"
        )
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from torch import Tensor, nn

from analysis.common import file_sha256, write_csv
from landscape.io import resolve_device
from training import checkpoint
from training.config import ArgumentParser
from training.data import TensorLoader, dataset_for
from training.errors import ToolkitError
from training.trainer import evaluate

COLUMNS = (
    "checkpoint", "sha256", "method", "train_T", "T", "split",
    "acc", "l_sdt", "l_tet", "l_steps", "firing_rate", "num_samples",
)  # fmt: skip


class AtTimeSteps(nn.Module):
    """Calls ``model(x, T=T)``: evaluates at another T without touching the model."""

    def __init__(self, model: nn.Module, T: int) -> None:
        super().__init__()
        self.model, self.T = model, T

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, T=self.T)


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


def evaluate_timesteps(path: Path, steps: list[int], split: str, batch_size: int, device) -> list:
    """Rows of ``COLUMNS`` for one checkpoint."""
    model, config = checkpoint.load(path, device)
    dataset = dataset_for(config)
    if dataset.x_test.ndim != 4:
        raise ToolkitError(f"{path}: temporal scalability needs static images, not event frames")
    x, y = (
        (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    )
    loader = TensorLoader(x.to(device), y.to(device), batch_size)
    digest, rows = file_sha256(path), []
    for T in steps:
        metrics = evaluate(AtTimeSteps(model, T), loader, config["tet_lambda"], config["tet_phi"])
        values = [metrics[k] for k in ("acc", "l_sdt", "l_tet", "l_steps", "firing_rate")]
        rows.append((str(path), digest, config["method"], config["T"], T, split, *values, len(y)))
    return rows


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

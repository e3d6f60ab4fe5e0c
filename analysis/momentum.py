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
from landscape.io import resolve_device
from analysis.plots_momentum import save_momentum_figures
from training import checkpoint
from training.config import ArgumentParser
from training.data import TensorLoader, dataset_for
from training.errors import ToolkitError
from training.momentum import gradient_statistics, momentum_subset, statistics_rows

COLUMNS = ("source", "method", "epoch", "loss", "quantity", "t", "s", "layer", "value")


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


def checkpoint_rows(path: Path, samples: int | None, device) -> list[dict]:
    """Statistics of one checkpoint, as long-format rows."""
    model, config = checkpoint.load(path, device)
    data = dataset_for(config)
    num = samples or config.get("stats_samples", 256)
    x, y = momentum_subset(data.x_train.to(device), data.y_train.to(device), num)
    batches = list(TensorLoader(x, y, 256).batches())
    stats = gradient_statistics(model, batches, config["tet_lambda"], config["tet_phi"])
    epoch = checkpoint.load_raw(path)["epoch"]
    meta = {"source": str(path), "method": _method(config)}
    return [{**meta, **row} for row in statistics_rows(stats, epoch)]


def _method(config: dict) -> str:
    switch = config.get("switch_to_tet_at", 0)
    return f"sdt->tet@{switch}" if switch else config["method"]


def run_rows(run_dir: Path, recompute: bool, samples: int | None, device) -> list[dict]:
    """Logged (or recomputed) statistics of every epoch of a run."""
    if recompute:
        paths = sorted(run_dir.glob("epoch_*.pt"))
        if not paths:
            raise ToolkitError(f"{run_dir} has no epoch_NNN.pt files; train with --save-every 1")
        return [row for path in paths for row in checkpoint_rows(path, samples, device)]
    csv_path = run_dir / "gradient_stats.csv"
    if not csv_path.is_file():
        raise ToolkitError(f"{csv_path} not found; train with --gradient-stats, or --recompute")
    config = checkpoint.load_raw(run_dir / "last.pt")["config"]
    frame = pd.read_csv(csv_path, keep_default_na=False)
    meta = {"source": str(run_dir), "method": _method(config)}
    return [{**meta, **row} for row in frame.to_dict("records")]


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per source and epoch: gradient norms, mean error norms, output variance."""
    frame = frame.assign(value=pd.to_numeric(frame.value, errors="coerce"))
    key = ["source", "method", "epoch"]
    table = frame.pivot_table(
        index=key + ["loss"], columns="quantity", values="value", aggfunc="mean"
    ).reset_index()
    wide = table.pivot_table(index=key, columns="loss", values=["grad_norm", "error_norm"])
    wide.columns = [f"{quantity}_{loss}" for quantity, loss in wide.columns]
    return wide.reset_index()


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

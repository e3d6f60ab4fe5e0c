"""What one curve fit costs against one training run of the same model (issue 20).

Trains SDT and TET with seed 0 by ``training/run.py`` on a committed config (default
``configs/mnist1d.json``: MNIST-1D, 4,000 training samples, batch 128, 20 epochs; no train-split
evaluation, the test split once at the end, so the epoch times in ``metrics.csv`` are training
time), then fits the quadratic Bezier bend between the two minima exactly as
``analysis/connect.py`` does (A's optimizer, learning rate, batch size and epochs, L_SDT, every
training sample), and times one evaluated point of a profile (hard and smooth spikes, BatchNorm
interpolated and recomputed on 1,024 samples; 1,024 evaluation samples). Prints the seconds and
the ratio fit / training, and writes them to ``<out>/curve_cost.json``. The timings are of the
machine it runs on: run it alone, or say what else was running.

    python benchmarks/curve_cost.py --out /tmp/curve_cost
    python benchmarks/curve_cost.py --dry-run        # digits, one epoch, seconds
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from analysis.connectivity import PathEvaluator, fit_curve, split_state
from analysis.measures.inputs import Datasets, DataSpec, load_input, loss_function, select
from training.data.datasets import TensorLoader
from training.runs import checkpoint

REPO = Path(__file__).resolve().parent.parent


def train_pair(config: Path | None, epochs: int | None, out: Path, extra: list[str]) -> list[Path]:
    """SDT and TET, seed 0, in a subprocess; their run folders."""
    argv = [sys.executable, str(REPO / "training" / "run.py"), "--seeds", "0", "--quiet"]
    argv += ["--no-eval-train", "--test-every", "1000", "--no-gradient-stats", "--out", str(out)]
    argv += (["--config", str(config)] if config else []) + extra
    argv += ["--epochs", str(epochs)] if epochs else []
    subprocess.run(argv, check=True)
    return sorted(path.parent for path in out.rglob("last.pt"))


def training_seconds(run: Path) -> float:
    """The sum of the epoch times in ``metrics.csv``."""
    with open(run / "metrics.csv", newline="") as handle:
        return sum(float(row["seconds"]) for row in csv.DictReader(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "mnist1d.json")
    parser.add_argument("--epochs", type=int, default=None, help="default: the config's")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--dry-run", action="store_true", help="digits, one epoch")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="curve_cost_"))
    out.mkdir(parents=True, exist_ok=True)
    config, epochs, extra = args.config, args.epochs, ["--data-root", args.data_root]
    if args.dry_run:
        config, epochs, extra = None, 1, ["--T", "2"]
    runs = train_pair(config, epochs, out / "runs", extra)
    train = {run.name: training_seconds(run) for run in runs}
    a, b = (checkpoint.read(run / "last.pt") for run in runs)
    datasets = Datasets()
    input = load_input(a, DataSpec("train", 1024, 0, 256), "cpu", datasets)
    dataset = datasets.of(a.config)
    loader = TensorLoader(dataset.x_train, dataset.y_train, a.config.batch_size, True, 0)
    loss, _ = loss_function(a.config, "sdt")
    (start, _), (end, _) = split_state(a.model()), split_state(b.model())
    options = dict(epochs=a.config.epochs, lr=a.config.lr, optimizer=a.config.optimizer)
    began = time.perf_counter()
    for _ in fit_curve("bezier", input.model, start, end, loader, loss, **options):
        pass
    fit = time.perf_counter() - began
    bn_batches, _ = select(datasets, a.config, DataSpec("train", 1024, 0, 256))
    evaluator = PathEvaluator(input.model, input.loader, bn_batches, 0.05, 1.0)
    ends = (split_state(a.model()), split_state(b.model()))
    began = time.perf_counter()
    list(evaluator.profile("line", [0.5], ends))
    point = time.perf_counter() - began
    mean_train = sum(train.values()) / len(train)
    result = {
        "config": str(config) if config else "training defaults (dry run)",
        "epochs": a.config.epochs,
        "steps_per_epoch": len(loader),
        "training_seconds": train,
        "fit_seconds": fit,
        "fit_over_training": fit / mean_train,
        "profile_point_seconds": point,
        "threads": 1,
        "torch": torch.__version__,
    }
    (out / "curve_cost.json").write_text(json.dumps(result, indent=1) + "\n")
    for name, seconds in train.items():
        print(f"training {name}: {seconds:.1f} s")
    print(f"Bezier fit, {a.config.epochs} epochs x {len(loader)} steps: {fit:.1f} s")
    print(f"fit / training: {fit / mean_train:.2f}")
    print(f"one profile point (4 evaluations, BN recomputed twice): {point:.2f} s")
    print(f"wrote {out / 'curve_cost.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

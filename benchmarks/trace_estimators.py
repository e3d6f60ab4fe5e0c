"""Trace estimators on a real SNN Hessian: the products each needs for a stated relative error.

For the Hessian of L_SDT (and its normalized form ``diag|w| H diag|w|``) of a checkpoint, on the
flatness protocol's 1,024 training samples (float32, as the study measures them), every estimator
runs ``--repeats`` times with independent probe seeds at each product count. Reported per
estimator and count: the mean, the empirical relative spread ``std(estimates) / |mean|`` over the
repeats (the error a user gets; every estimator here is unbiased), the mean reported relative
``stderr`` (what a table carries) and the seconds per estimate; then, for the target relative
error, the fewest products each estimator needed and the ratio to Hutch++ at 15 products (the
protocol's old default).

Hutch++ (Meyer et al. 2021) against XTrace (Epperly, Tropp & Webber 2024); XNysTrace needs a
positive semi-definite operator, which a Hessian at a trained SNN is not, so it is left out here.

    python benchmarks/trace_estimators.py runs/.../last.pt
    python benchmarks/trace_estimators.py --dry-run        # a tiny digits model, seconds
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from analysis.measures.inputs import DataSpec, load_input
from landscape import estimate_trace
from training.runs import checkpoint

COUNTS = {"hutch++": (15, 30), "xtrace": (8, 12, 16)}


def _dry_checkpoint(folder: Path) -> Path:
    from training.models import build

    torch.manual_seed(0)
    kwargs = dict(num_classes=10, image_size=8, hidden=(8,), T=2)
    model = build("spiking_mlp", **kwargs)
    config = {"model": "spiking_mlp", "dataset": "digits", "T": 2, "method": "sdt"}
    config.update(tet_lambda=0.05, tet_phi=1.0, seed=0, input_shape=[1, 8, 8], num_classes=10)
    path = folder / "last.pt"
    checkpoint.save(path, model, "spiking_mlp", kwargs, config, epoch=0, step=0)
    return path


def measure(operator, method: str, count: int, repeats: int) -> dict:
    """Mean, relative spread, mean relative stderr and seconds of ``repeats`` estimates."""
    values, errors, seconds = [], [], []
    for seed in range(repeats):
        start = time.perf_counter()
        found = estimate_trace(operator, count, method, torch.Generator().manual_seed(seed))
        seconds.append(time.perf_counter() - start)
        values.append(found.mean)
        errors.append(found.stderr)
    mean = statistics.fmean(values)
    return {
        "method": method,
        "products": count,
        "mean": mean,
        "relative_spread": statistics.stdev(values) / abs(mean),
        "relative_stderr": statistics.fmean(errors) / abs(mean),
        "seconds": statistics.median(seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, help="a checkpoint (last.pt)")
    parser.add_argument("--samples", type=int, default=1024, help="training samples (1024)")
    parser.add_argument("--repeats", type=int, default=8, help="probe seeds per count (8)")
    parser.add_argument("--target", type=float, default=0.03, help="relative error (0.03)")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, few repeats")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.dry_run:
        args.checkpoint = _dry_checkpoint(Path(tempfile.mkdtemp()))
        args.samples, args.repeats = 64, 3
    elif args.checkpoint is None:
        parser.error("give a checkpoint, or --dry-run")
    found = checkpoint.read(args.checkpoint)
    loss = load_input(found, DataSpec("train", args.samples, 0, 256)).loss("sdt")
    operators = {"H": loss.hessian, "diag|w| H diag|w|": loss.normalized(0.0)}
    print(f"{args.checkpoint}: {loss.hessian.shape[0]} parameters, {args.samples} samples")
    for label, operator in operators.items():
        rows = [
            measure(operator, method, count, args.repeats)
            for method, counts in COUNTS.items()
            for count in counts
        ]
        print(f"\n{label}")
        header = ("method", "products", "mean", "rel. spread", "rel. stderr", "s")
        print("{:8} {:>8} {:>12} {:>11} {:>11} {:>6}".format(*header))
        for r in rows:
            print(
                f"{r['method']:8} {r['products']:8d} {r['mean']:12.5g} "
                f"{r['relative_spread']:11.4f} {r['relative_stderr']:11.4f} {r['seconds']:6.2f}"
            )
        fewest = {
            method: min(
                (
                    r["products"]
                    for r in rows
                    if r["method"] == method and r["relative_spread"] <= args.target
                ),
                default=math.inf,
            )
            for method in COUNTS
        }
        print(
            f"products for relative error <= {args.target:g}: "
            + ", ".join(f"{m} {c}" for m, c in fewest.items())
        )
        hutch = next(r for r in rows if r["method"] == "hutch++" and r["products"] == 15)
        for r in rows:
            if r["method"] == "xtrace":
                ratio = hutch["relative_spread"] / r["relative_spread"]
                print(f"  relative spread, hutch++ 15 / xtrace {r['products']}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

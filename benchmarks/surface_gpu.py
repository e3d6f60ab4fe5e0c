"""Grid points/s of the surface engine against a plain per-point loop, for the GPU check.

ResNet-19 (``--width``, ``--T``) on CIFAR-shaped random data (a fixed evaluation set of
``--samples``), two random filter-normalized directions, ``--points`` grid points: the engine with
``--points-per-forward`` points stacked in one forward (input cache on), against a loop that writes
each point's weights into the model in place and evaluates it under ``no_grad``. Both give L_SDT,
L_TET and the accuracy per point; a few points are compared first. Prints
``surface points/s: engine X, plain loop Y, ratio Z``. ``--dry-run``: tiny, on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from analysis.measures.inputs import PointMetrics
from benchmarks.surface_vs_pointwise import METRICS, _loop
from landscape.directions import random_direction
from landscape.surface import SurfaceEvaluator
from training.models import build


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--device", default="cuda")
    add("--width", type=float, default=1.0)
    add("--T", type=int, default=2)
    add("--samples", type=int, default=512)
    add("--batch-size", type=int, default=256)
    add("--points", type=int, default=32)
    add("--points-per-forward", type=int, default=16)
    add("--dry-run", action="store_true", help="tiny model and data on the CPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        args.device, args.width, args.samples, args.points = "cpu", 0.0625, 4, 2
        args.batch_size, args.points_per_forward = 4, 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build("resnet19", T=args.T, width=args.width).to(device).eval()
    x = torch.rand(args.samples, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.samples,), device=device)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    cpu_weights = {n: w.cpu() for n, w in weights.items()}
    directions = []
    for _ in range(2):
        direction = random_direction(cpu_weights, generator)
        directions.append({n: d.to(device) for n, d in direction.items()})
    coords = torch.rand(args.points, 2, dtype=torch.float64, generator=generator) * 2 - 1
    batches = [
        (x[i : i + args.batch_size], y[i : i + args.batch_size])
        for i in range(0, args.samples, args.batch_size)
    ]
    engine = SurfaceEvaluator(
        model,
        directions,
        batches,
        PointMetrics(0.05, 1.0),
        points_per_forward=args.points_per_forward,
    )
    check = engine.evaluate(coords[:2])
    print(f"engine: {engine.stacking}")
    rates = {}
    for name, run in (
        ("engine", lambda: engine.evaluate(coords)),
        ("plain loop", lambda: _loop(model, batches, weights, directions, coords.float())),
    ):
        if name == "plain loop" and not args.dry_run:
            run()  # warm-up (the engine warmed up on the check)
        _sync(device)
        start = time.perf_counter()
        values = run()
        _sync(device)
        rates[name] = len(coords) / (time.perf_counter() - start)
    loop = {k: v[:2] for k, v in values.items()}
    worst = max(abs(float(check[k][i]) - float(loop[k][i])) for k in METRICS for i in range(2))
    print(f"largest difference on 2 points (float32, a spike flip is possible): {worst:.2e}")
    print(
        f"surface points/s: engine {rates['engine']:.2f}, plain loop {rates['plain loop']:.2f}, "
        f"ratio {rates['engine'] / rates['plain loop']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""2-D loss surface of an SNN on the CPU: our engine vs a plain per-point loop vs a Li-style loop.

The same model, evaluation set and grid (random filter-normalized directions, 11 x 11 on [-1, 1]^2)
are computed three ways, each point giving L_SDT, L_TET and the accuracy:

* engine: ``landscape.surface.SurfaceEvaluator`` as ``analysis/surface.py`` runs it (inference
  mode, ``functional_call``, batches of 256, channels-last weights and inputs, the input-layer
  cache), with the grid shared by ``--processes`` worker processes of one thread each (chunk
  ``c`` to rank ``c % N``, as under torchrun). Worker start-up is reported but not timed, as
  it is paid once per surface; ``--compile`` adds ``torch.compile`` (compilation not timed either);
* plain loop: the evaluation set pre-loaded as tensors; for each point the weights are written into
  the model in place and the set is evaluated in batches of 128 under ``no_grad`` (all threads);
* Li-style loop (tomgoldstein/loss-landscape's ``plot_surface.py``): the same, but through a torch
  ``DataLoader`` over a ``Dataset`` that applies the per-sample transforms (to-float scaling and
  normalization) again at every point.

All three are first run in float64 on a few points and must agree to 1e-10 (relative); timings are
in float32, best of ``--repeats``, each loop with one thread and with all of torch's threads
(on a shared or oversubscribed CPU, OpenMP's spinning threads can make the multi-threaded loop
many times slower, so both are shown and the faster is the baseline). The last two lines are
``ratio vs plain loop: X.XX`` and ``ratio vs li-style loop: X.XX``: points/s of the best engine
setting over points/s of the best setting of that loop. Timings depend on other load.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from analysis.measures.inputs import PointMetrics
from landscape.directions import random_direction
from landscape.store import Grid
from landscape.surface import SurfaceEvaluator
from training.data.datasets import load_digits
from training.models import build

METRICS = ("l_sdt", "l_tet", "accuracy")


class PixelDataset(torch.utils.data.Dataset):
    """Raw 0..16 digit pixels; ``__getitem__`` scales and normalizes a sample (torchvision-like)."""

    def __init__(self, raw: Tensor, labels: Tensor, mean: float = 0.0, std: float = 1.0) -> None:
        self.raw, self.labels, self.mean, self.std = raw, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.raw[index].to(torch.get_default_dtype()) / 16.0  # ToTensor-like scaling
        return (x - self.mean) / self.std, self.labels[index]  # Normalize


def _set_weights(model: nn.Module, weights: dict, directions: list[dict], point) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            value = weights[name]
            for c, d in zip(point, directions):
                value = value + c * d[name]
            p.copy_(value)


def _loop(model, batches, weights, directions, coords) -> dict[str, np.ndarray]:
    """Per-point loop over ``batches`` (a list of tensors or a DataLoader)."""
    net, metrics, rows = copy.deepcopy(model).eval(), PointMetrics(0.05, 1.0), []
    for point in coords.tolist():
        _set_weights(net, weights, directions, point)
        sums, total = dict.fromkeys(METRICS, 0.0), 0
        with torch.no_grad():
            for x, y in batches:
                for key, value in metrics(net(x), y).items():
                    sums[key] += float(value)
                total += len(y)
        rows.append([sums[key] / total for key in METRICS])
    return dict(zip(METRICS, np.array(rows).T))


def plain_loop(model, x, y, weights, directions, coords) -> dict[str, np.ndarray]:
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, len(y), 128)]
    return _loop(model, batches, weights, directions, coords)


def li_style_loop(model, raw, y, weights, directions, coords) -> dict[str, np.ndarray]:
    loader = torch.utils.data.DataLoader(PixelDataset(raw, y), batch_size=128, shuffle=False)
    return _loop(model, loader, weights, directions, coords)


def _engine(model, x, y, directions, options: dict) -> SurfaceEvaluator:
    batch_size = options["batch_size"]
    batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
    return SurfaceEvaluator(
        model,
        directions,
        batches,
        PointMetrics(0.05, 1.0),
        dtype=x.dtype,
        use_channels_last=options["channels_last"],
        use_compile=options["compile"],
        points_per_forward=options.get("points_per_forward", 1),
    )


def _chunks(num_points: int, rank: int, world_size: int, size: int = 8) -> list[np.ndarray]:
    starts = range(rank * size, num_points, world_size * size)
    return [np.arange(s, min(s + size, num_points)) for s in starts]


def _worker(rank, world_size, model, x, y, directions, options, coords, barrier, queue) -> None:
    torch.set_num_threads(1)
    evaluator = _engine(model, x, y, directions, options)
    evaluator.evaluate(coords[:1])  # probe the input layer (and compile), untimed
    barrier.wait()
    for index in _chunks(len(coords), rank, world_size):
        queue.put((index, {k: v.numpy() for k, v in evaluator.evaluate(coords[index]).items()}))
    queue.put(None)


def engine_processes(model, x, y, directions, coords, options) -> tuple[dict, float, float]:
    """The grid shared by worker processes: ``(values, seconds, start-up seconds)``."""
    context, world_size = mp.get_context("spawn"), options["processes"]
    barrier, queue = context.Barrier(world_size + 1), context.Queue()
    start = time.perf_counter()
    workers = [
        context.Process(
            target=_worker,
            args=(rank, world_size, model, x, y, directions, options, coords, barrier, queue),
        )
        for rank in range(world_size)
    ]
    for worker in workers:
        worker.start()
    barrier.wait()
    ready = time.perf_counter()
    values, finished = {key: np.zeros(len(coords)) for key in METRICS}, 0
    while finished < world_size:
        item = queue.get()
        if item is None:
            finished += 1
            continue
        for key in METRICS:
            values[key][item[0]] = item[1][key]
    seconds = time.perf_counter() - ready
    for worker in workers:
        worker.join()
    return values, seconds, ready - start


def check_float64(model, raw, x, y, weights, directions, options, num_points: int = 3) -> float:
    """Largest relative difference of the three methods on a few points, in float64."""
    model64, x64 = copy.deepcopy(model).double(), x.double()
    weights64 = {n: w.double() for n, w in weights.items()}
    directions64 = [{n: d.double() for n, d in direction.items()} for direction in directions]
    coords = torch.tensor([[0.0, 0.0], [0.5, -0.5], [-1.0, 0.75]], dtype=torch.float64)
    coords = coords[:num_points]
    evaluator = _engine(model64, x64, y, directions64, {**options, "compile": False})
    ours = {k: v.numpy() for k, v in evaluator.evaluate(coords).items()}
    torch.set_default_dtype(torch.float64)
    try:
        plain = plain_loop(model64, x64, y, weights64, directions64, coords)
        li_style = li_style_loop(model64, raw, y, weights64, directions64, coords)
    finally:
        torch.set_default_dtype(torch.float32)
    worst = 0.0
    for other in (plain, li_style):
        for key in METRICS:
            scale = np.maximum(np.abs(other[key]), 1e-300)
            worst = max(worst, float(np.max(np.abs(ours[key] - other[key]) / scale)))
    return worst


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--grid", type=int, default=11, help="points per axis (default: %(default)s)")
    add("--samples", type=int, default=1024, help="evaluation samples (default: %(default)s)")
    add("--processes", type=int, default=2, help="engine worker processes (default: %(default)s)")
    add("--batch-size", type=int, default=256, help="engine batch size (default: %(default)s)")
    add(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="engine: channels-last weights and inputs (default: %(default)s)",
    )
    add("--compile", action="store_true", help="engine: torch.compile the forward")
    add(
        "--stack",
        type=int,
        default=16,
        help="engine row with K grid points per forward (default: %(default)s)",
    )
    add("--repeats", type=int, default=1, help="timing repeats, best kept (default: %(default)s)")
    add(
        "--seed",
        type=int,
        default=0,
        help="seed of the model and directions (default: %(default)s)",
    )
    return parser


def setup(args: argparse.Namespace):
    """The digits SNN, raw and scaled digits, the directions and the grid."""
    torch.manual_seed(args.seed)
    model = build("digits_snn").eval()
    data = load_digits()
    index = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(args.seed))
    x, y = data.x_train[index[: args.samples]], data.y_train[index[: args.samples]]
    raw = torch.round(x * 16).to(torch.uint8)  # what a dataset on disk holds
    assert torch.equal(raw.float() / 16.0, x), "raw pixels must reproduce the scaled inputs"
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(args.seed)
    directions = [random_direction(weights, generator) for _ in range(2)]
    coords = Grid.linspace((-1, 1, args.grid), (-1, 1, args.grid)).coordinates()
    return model, raw, x, y, weights, directions, coords


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def timings(args, model, raw, x, y, weights, directions, coords, options) -> dict[str, float]:
    """Best seconds over ``--repeats`` per method and thread setting (loops: 1 and all threads)."""
    threads, best = torch.get_num_threads(), {}
    evaluator = _engine(model, x, y, directions, options)
    evaluator.evaluate(coords[:1])  # probe (and compile) once, untimed
    stacked = _engine(model, x, y, directions, {**options, "points_per_forward": args.stack})
    stacked.evaluate(coords[:2])  # probe the stacking, untimed
    for _ in range(args.repeats):
        found = {}
        seconds, found["startup"] = engine_processes(model, x, y, directions, coords, options)[1:]
        found[f"engine, {args.processes} processes x 1 thread"] = seconds
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            found[f"engine, 1 process x {count} threads"] = _timed(evaluator.evaluate, coords)
            found[
                f"engine, 1 process x {count} threads, {stacked.points_per_forward} pts/forward"
            ] = _timed(stacked.evaluate, coords)
            for name, loop, data in (("plain", plain_loop, x), ("li-style", li_style_loop, raw)):
                found[f"{name} loop, {count} threads"] = _timed(
                    loop, model, data, y, weights, directions, coords
                )
        torch.set_num_threads(threads)
        best = {k: min(v, best.get(k, v)) for k, v in found.items()}
    return best


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model, raw, x, y, weights, directions, coords = setup(args)
    options = {
        "batch_size": args.batch_size,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "processes": args.processes,
    }
    difference = check_float64(model, raw, x, y, weights, directions, options)
    print(f"float64 check on 3 points: max relative difference {difference:.2e} (limit 1e-10)")
    if not difference <= 1e-10:
        print("error: the three methods disagree in float64", file=sys.stderr)
        return 1
    params = sum(p.numel() for p in model.parameters())
    print(
        f"digits_snn ({params:,} parameters, T={model.T}), {len(y)} samples, {args.grid}x"
        f"{args.grid} grid, float32; engine: batch {args.batch_size}, channels-last "
        f"{args.channels_last}, compile {args.compile}, input cache on"
    )
    seconds = timings(args, model, raw, x, y, weights, directions, coords, options)
    print(f"engine worker start-up (not timed): {seconds.pop('startup'):.1f} s")
    rate = {name: len(coords) / value for name, value in seconds.items()}
    for name, value in rate.items():
        print(f"{name:<40} {value:8.2f} points/s")
    best = {
        kind: max(v for k, v in rate.items() if k.startswith(kind))
        for kind in ("engine", "plain", "li-style")
    }
    print("(ratios: best engine setting over the best thread setting of each loop)")
    print(f"ratio vs plain loop: {best['engine'] / best['plain']:.2f}")
    print(f"ratio vs li-style loop: {best['engine'] / best['li-style']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Top-5 Hessian eigenvalues of SNNs: our Lanczos vs PyHessian's power iteration vs scipy eigsh.

On the same model, batch and loss (SDT cross-entropy of the mean output), in float32 on the CPU:

* ours: ``top_eigenvalues(HessianOperator(...), 5, which="LM", tol=1e-3)`` (Lanczos with full
  reorthogonalization, stopping when every Ritz pair has relative residual <= 1e-3);
* PyHessian 0.1 ``hessian(...).eigenvalues(top_n=5)`` with its defaults (power iteration with
  deflation, ``maxIter=100``, ``tol=1e-3`` on the relative change of the Rayleigh quotient). Power
  iteration converges to the largest-MAGNITUDE eigenvalues, hence ``which="LM"`` above;
* scipy ``eigsh`` (ARPACK) through a ``LinearOperator`` on the same HVP, ``tol=1e-3``.

All three are compared with a tight reference (ours in float64, ``tol=1e-8``); PyHessian also runs
with ``tol=1e-5``, closer to our accuracy (the "matched-accuracy" lines). Every product is counted,
and each method's wall time includes its own setup (one forward and backward pass with the graph
kept, for both PyHessian and ours); it is the median of ``--method-repeats`` runs taken in turn, so
load changes hit every method alike. Per-call costs are medians of interleaved repeats. Models:
the default digits SNN (6,138 parameters) after 100 Adam steps on real digits, evaluated on a fixed
batch of 256, and a width-1/16 spiking ResNet-19 (T=2) with random weights on random CIFAR-shaped
data.
The summary lines are the worst case over the models: PyHessian's products and time over ours at
its defaults and at matched accuracy, eigsh's products and time over ours, and ``HVP/gradient
cost`` (one HVP of our operator over one gradient on the same batch). Timings depend on other
load on the machine; the HVP counts do not.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator as ScipyOperator
from scipy.sparse.linalg import eigsh
from torch import Tensor, nn

from landscape import HessianOperator, Objective, top_eigenvalues
from training.data.datasets import dataset_for
from training.models import build
from training.runs.config import TrainConfig
from training.snn.losses import sdt_loss

K, TOL = 5, 1e-3


@dataclass
class Problem:
    """A model with a fixed batch."""

    name: str
    model: nn.Module
    x: Tensor
    y: Tensor


@dataclass
class Outcome:
    """Eigenvalues found by one method, with their cost."""

    eigenvalues: list[float]
    num_hvps: int
    seconds: float


def digits_problem(batch_size: int, train_steps: int) -> Problem:
    """The default digits SNN after ``train_steps`` Adam steps (so its Hessian is a trained one)."""
    data = dataset_for(TrainConfig())
    torch.manual_seed(0)
    model = build("digits_snn")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(train_steps):
        index = torch.randint(0, len(data.y_train), (64,))
        loss = sdt_loss(model.train()(data.x_train[index]), data.y_train[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return Problem("digits_snn", model.eval(), data.x_train[:batch_size], data.y_train[:batch_size])


def cifar_problem(batch_size: int) -> Problem:
    """A width-1/16 spiking ResNet-19 (T=2) with random weights on random CIFAR-shaped data."""
    torch.manual_seed(0)
    model = build("resnet19", num_classes=10, in_channels=3, T=2, width=1 / 16).eval()
    x = torch.randn(batch_size, 3, 32, 32)
    return Problem("resnet19 (width 1/16)", model, x, torch.randint(0, 10, (batch_size,)))


def interleaved_seconds(functions: dict[str, Callable], repeats: int) -> dict[str, float]:
    """Median wall time per call, timing the functions in turn (so load changes hit all alike)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for repeat in range(repeats + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if repeat:  # the first round is a warm-up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def run_ours(problem: Problem) -> Outcome:
    start = time.perf_counter()
    operator = HessianOperator(Objective(problem.model, sdt_loss, [(problem.x, problem.y)]))
    generator = torch.Generator().manual_seed(0)
    result = top_eigenvalues(operator, K, "LM", TOL, generator=generator, return_vectors=False)
    return Outcome(result.eigenvalues.tolist(), result.num_matvecs, time.perf_counter() - start)


def run_pyhessian(problem: Problem, tol: float = 1e-3) -> Outcome:
    module = importlib.import_module("pyhessian.hessian")  # the package name shadows it

    count, product = [0], module.hessian_vector_product

    def counted(*args):
        count[0] += 1
        return product(*args)

    module.hessian_vector_product = counted
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its retained double-backward graph warns
            torch.manual_seed(0)
            start = time.perf_counter()
            engine = module.hessian(
                copy.deepcopy(problem.model), sdt_loss, data=(problem.x, problem.y), cuda=False
            )
            eigenvalues, _ = engine.eigenvalues(top_n=K, tol=tol)
            seconds = time.perf_counter() - start
    finally:
        module.hessian_vector_product = product
    return Outcome([float(value) for value in eigenvalues], count[0], seconds)


def run_eigsh(problem: Problem) -> Outcome:
    start = time.perf_counter()
    operator = HessianOperator(Objective(problem.model, sdt_loss, [(problem.x, problem.y)]))
    n = operator.shape[0]

    def matvec(v: np.ndarray) -> np.ndarray:
        return (operator @ torch.from_numpy(np.asarray(v, np.float32).ravel())).numpy()

    scipy_operator = ScipyOperator((n, n), matvec=matvec, dtype=np.float32)
    v0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    eigenvalues = eigsh(scipy_operator, k=K, which="LM", tol=TOL, v0=v0, return_eigenvectors=False)
    ordered = sorted(eigenvalues.tolist(), key=abs, reverse=True)
    return Outcome(ordered, operator.num_matvecs, time.perf_counter() - start)


def reference(problem: Problem) -> list[float]:
    """Tight top-5 by magnitude: ours in float64 with tol 1e-8."""
    objective = Objective(problem.model, sdt_loss, [(problem.x, problem.y)], dtype=torch.float64)
    result = top_eigenvalues(
        HessianOperator(objective),
        K,
        "LM",
        1e-8,
        return_vectors=False,
        generator=torch.Generator().manual_seed(1),
    )
    return result.eigenvalues.tolist()


def hvp_costs(problem: Problem, repeats: int) -> dict[str, float]:
    """Seconds per gradient and per HVP: cached graph, double backward, forward-over-reverse."""
    batches = [(problem.x, problem.y)]
    objective = Objective(problem.model, sdt_loss, batches)
    forward_over_reverse = Objective(
        problem.model, sdt_loss, batches, hvp_method="forward_over_reverse"
    )
    v = torch.randn(objective.num_params, generator=torch.Generator().manual_seed(0))
    cached = objective.hvp_function()
    functions = {
        "gradient": objective.grad,
        "hvp (cached graph, used)": lambda: cached(v),
        "hvp (double backward)": lambda: objective.hvp(v),
        "hvp (forward-over-reverse)": lambda: forward_over_reverse.hvp(v),
    }
    return interleaved_seconds(functions, repeats)


def max_relative_error(values: list[float], exact: list[float]) -> float:
    return max(abs(a - b) / abs(b) for a, b in zip(values, exact))


def timed_outcomes(methods: dict[str, Callable[[], Outcome]], repeats: int) -> dict[str, Outcome]:
    """Run every method ``repeats`` times in turn; its seconds are the median over the rounds.

    Interleaving makes load changes hit every method alike; the eigenvalues and product counts
    are those of the first round (every method is seeded, so the rounds agree).
    """
    rounds: dict[str, list[Outcome]] = {name: [] for name in methods}
    for _ in range(max(repeats, 1)):
        for name, method in methods.items():
            rounds[name].append(method())
    return {
        name: Outcome(
            runs[0].eigenvalues, runs[0].num_hvps, statistics.median(run.seconds for run in runs)
        )
        for name, runs in rounds.items()
    }


def report(problem: Problem, repeats: int, method_repeats: int) -> dict[str, float]:
    """Run every method on one problem, print a block and return the ratios."""
    n = sum(p.numel() for p in problem.model.parameters())
    print(f"\n== {problem.name}: {n} parameters, batch {len(problem.y)}, float32 ==")
    exact = reference(problem)  # also the warm-up of every code path
    print(f"reference (float64, tol 1e-8):  {', '.join(f'{v:.6g}' for v in exact)}")
    methods = {
        "ours": lambda: run_ours(problem),
        "PyHessian": lambda: run_pyhessian(problem),
        "PyHessian (tol 1e-5)": lambda: run_pyhessian(problem, tol=1e-5),
        "eigsh": lambda: run_eigsh(problem),
    }
    outcomes = timed_outcomes(methods, method_repeats)
    print(f"{'method':<21} {'HVPs':>6} {'seconds':>9} {'max rel. error':>15}  top-5 (by |lambda|)")
    for name, outcome in outcomes.items():
        error = max_relative_error(outcome.eigenvalues, exact)
        values = ", ".join(f"{v:.5g}" for v in outcome.eigenvalues)
        print(f"{name:<21} {outcome.num_hvps:>6} {outcome.seconds:>9.2f} {error:>15.2e}  {values}")
    costs = hvp_costs(problem, repeats)
    print("seconds per call: " + ", ".join(f"{key} {value:.4f}" for key, value in costs.items()))
    ours, theirs = outcomes["ours"], outcomes["PyHessian"]
    tight, arpack = outcomes["PyHessian (tol 1e-5)"], outcomes["eigsh"]
    return {
        "hvp": theirs.num_hvps / ours.num_hvps,
        "time": theirs.seconds / ours.seconds,
        "tight hvp": tight.num_hvps / ours.num_hvps,
        "tight time": tight.seconds / ours.seconds,
        "eigsh": arpack.num_hvps / ours.num_hvps,
        "eigsh time": arpack.seconds / ours.seconds,
        "cost": costs["hvp (cached graph, used)"] / costs["gradient"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=256, help="digits batch (default: 256)")
    parser.add_argument("--cifar-batch-size", type=int, default=8, help="ResNet batch (default: 8)")
    parser.add_argument("--train-steps", type=int, default=100, help="digits Adam steps")
    parser.add_argument("--repeats", type=int, default=5, help="per-call timing repeats")
    parser.add_argument(
        "--method-repeats", type=int, default=3, help="timed runs of every method (median)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--skip-cifar", action="store_true", help="only the digits model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        "PyHessian's power iteration returns the largest-MAGNITUDE eigenvalues: every method "
        "is asked for the top-5 by |lambda| (which='LM')."
    )
    problems = [digits_problem(args.batch_size, args.train_steps)]
    if not args.skip_cifar:
        problems.append(cifar_problem(args.cifar_batch_size))
    ratios = [report(problem, args.repeats, args.method_repeats) for problem in problems]
    worst = {key: min(r[key] for r in ratios) for key in ratios[0]}
    print(f"\nsummary: worst case over {len(ratios)} model(s)")
    print(f"HVP ratio (PyHessian/ours): {worst['hvp']:.2f}")
    print(f"time ratio (PyHessian/ours): {worst['time']:.2f}")
    print(f"matched-accuracy HVP ratio (PyHessian tol 1e-5/ours): {worst['tight hvp']:.2f}")
    print(f"matched-accuracy time ratio (PyHessian tol 1e-5/ours): {worst['tight time']:.2f}")
    print(f"HVP ratio (eigsh/ours): {worst['eigsh']:.2f}")
    print(f"time ratio (eigsh/ours): {worst['eigsh time']:.2f}")
    print(f"HVP/gradient cost: {max(r['cost'] for r in ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

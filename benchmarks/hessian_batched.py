"""Batched Hessian-vector products against one product at a time, side by side in one run.

On the default digits SNN (100 Adam steps on real digits) at the Hessian command's default
samples (1,024 in batches of 256, float32, cached gradient graph):

* ``batched HVP speedup (k=16)``: per-product throughput of ``HessianOperator.matmat`` on a block
  of 16 columns over 16 single products (medians of interleaved repeats);
* ``hessian command speedup``: the command's default work (top-5 ``LA`` eigenvalues at
  ``tol=1e-3`` and Hutch++ with 99 products) with block products (trace probes as blocks; top-5
  by single-vector Lanczos and by block Lanczos, the faster of the two is reported) against one
  product at a time (the old path); the absolute seconds of both are printed, and the operator's
  defaults on the device (batching is off on the CPU, where it measured slower).

``--model resnet19`` runs the width-1/16 spiking ResNet-19 (T=2) on random CIFAR-shaped data
instead; ``--device cuda`` for the GPU (see ``benchmarks/gpu_check.sh``); ``--dry-run`` tiny.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch

from landscape import HessianOperator, Objective, estimate_trace, top_eigenvalues
from training.data.datasets import dataset_for
from training.models import build
from training.runs.config import TrainConfig
from training.snn.losses import sdt_loss


def problem(name: str, samples: int, batch_size: int, train_steps: int, device: str):
    """(model, batches) of the benchmark model."""
    torch.manual_seed(0)
    if name == "digits":
        data = dataset_for(TrainConfig())
        model = build("digits_snn")
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
        for _ in range(train_steps):
            index = torch.randint(0, len(data.y_train), (64,))
            loss = sdt_loss(model.train()(data.x_train[index]), data.y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        x, y = data.x_train[:samples], data.y_train[:samples]
    else:
        model = build("resnet19", num_classes=10, in_channels=3, T=2, width=1 / 16)
        x, y = torch.randn(samples, 3, 32, 32), torch.randint(0, 10, (samples,))
    batches = [
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, samples, batch_size)
    ]
    return model.eval().to(device), [(a.to(device), b.to(device)) for a, b in batches]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def product_speedup(operator: HessianOperator, k: int, repeats: int, device: str) -> float:
    """Per-product throughput of one ``matmat`` of ``k`` columns over ``k`` single products."""
    V = torch.randn(operator.shape[0], k, generator=torch.Generator().manual_seed(0))
    V = V.to(operator.device, operator.dtype)
    functions = {
        "single": lambda: [operator @ column for column in V.T],
        "batched": lambda: operator.matmat(V),
    }
    times = {name: [] for name in functions}
    for repeat in range(repeats + 1):
        for name, function in functions.items():
            _sync(device)
            start = time.perf_counter()
            function()
            _sync(device)
            if repeat:  # the first round is a warm-up
                times[name].append(time.perf_counter() - start)
    single, batched = (statistics.median(times[name]) for name in ("single", "batched"))
    print(f"seconds per product: single {single / k:.4f}, batched (k={k}) {batched / k:.4f}")
    return single / batched


def profile_products(operator: HessianOperator, k: int, rows: int = 8) -> None:
    """Where the time goes: the top operators by self CPU time, ``k`` single products against one
    block of ``k`` (the evidence for why batching does or does not pay on this device)."""
    from torch.profiler import ProfilerActivity, profile

    V = torch.randn(operator.shape[0], k, generator=torch.Generator().manual_seed(0))
    V = V.to(operator.device, operator.dtype)
    operator.matmat(V)  # warm-up
    for name, function in (
        ("single", lambda: [operator @ c for c in V.T]),
        ("batched", lambda: operator.matmat(V)),
    ):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            function()
        print(f"-- profile, {name} (k={k}), top {rows} by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def command_work(objective: Objective, batched: bool, block_size: int, args) -> tuple[float, dict]:
    """The Hessian command's default work on one operator: (seconds, record)."""
    _sync(args.device)
    start = time.perf_counter()
    operator = HessianOperator(objective, batched=batched, block_size=block_size)
    generator = torch.Generator().manual_seed(1)
    top = top_eigenvalues(
        operator, args.top_k, "LA", 1e-3, args.max_steps, generator=generator, return_vectors=False
    )
    trace = estimate_trace(operator, args.num_matvecs, "hutch++", torch.Generator().manual_seed(3))
    _sync(args.device)
    record = {"top": top.eigenvalues.tolist(), "trace": trace.mean, "hvps": operator.num_matvecs}
    return time.perf_counter() - start, record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--model", choices=("digits", "resnet19"), default="digits")
    add("--samples", type=int, default=1024, help="the Hessian command's default (1024)")
    add("--batch-size", type=int, default=256, help="the Hessian command's default (256)")
    add("--train-steps", type=int, default=100, help="digits Adam steps")
    add("--k", type=int, default=16, help="block width of the product benchmark")
    add("--top-k", type=int, default=5)
    add("--num-matvecs", type=int, default=99, help="Hutch++ products (command default 99)")
    add("--repeats", type=int, default=3, help="timing repeats of the product benchmark")
    add("--threads", type=int, default=2, help="torch threads on the CPU (default: 2)")
    add("--device", default="cpu")
    add("--skip-command", action="store_true", help="only the product benchmark")
    add("--profile", action="store_true", help="also profile single against batched products")
    add("--dry-run", action="store_true", help="tiny settings (smoke test)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.max_steps = None
    if args.dry_run:  # a smoke test: unconverged eigenvalues are expected
        args.samples, args.batch_size, args.train_steps, args.repeats = 4, 2, 2, 1
        args.k, args.num_matvecs, args.top_k, args.max_steps = 2, 4, 2, 4
    torch.set_num_threads(args.threads)
    model, batches = problem(
        args.model, args.samples, args.batch_size, args.train_steps, args.device
    )
    objective = Objective(model, sdt_loss, batches)
    print(
        f"== {args.model}: {objective.num_params} parameters, {args.samples} samples, {args.device}"
    )
    speedup = product_speedup(HessianOperator(objective), args.k, args.repeats, args.device)
    print(f"batched HVP speedup (k={args.k}): {speedup:.2f}")
    if args.profile:
        profile_products(HessianOperator(objective), args.k)
    if args.skip_command:
        return 0
    runs = {
        "one product at a time (old path)": (False, 1),
        "batched, single-vector Lanczos": (True, 1),
        f"batched, block Lanczos (b={args.top_k})": (True, args.top_k),
    }
    seconds = {}
    if args.dry_run:
        warnings.simplefilter("ignore", RuntimeWarning)
    for name, (batched, block_size) in runs.items():
        seconds[name], record = command_work(objective, batched, block_size, args)
        top = ", ".join(f"{value:.5g}" for value in record["top"])
        print(
            f"{name:<36} {seconds[name]:8.2f} s {record['hvps']:5d} HVPs  top: {top}  "
            f"trace {record['trace']:.5g}"
        )
    old = seconds.pop("one product at a time (old path)")
    best = min(seconds, key=seconds.get)
    print(f"best batched path: {best}: {seconds[best]:.2f} s (old path {old:.2f} s)")
    print(f"hessian command speedup: {old / seconds[best]:.2f}")
    default = HessianOperator(objective)
    print(
        f"defaults on {args.device}: batched={default.batched}, block_size={default.block_size}"
        " (the operator batches only where it measured faster)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

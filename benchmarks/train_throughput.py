"""Training-step throughput (images/s) of our ResNet-19 against an official-TET-style version.

Both implementations hold the same weights (copied with ``training.runs.official``), and before
timing the script checks in float64 that they compute the same TET loss, parameter gradients and
BatchNorm running statistics on the same batch, so the two timings measure the same computation.
A training step is forward, TET loss (lambda 0.05), backward and an SGD step, on a fixed pool of
random CIFAR-shaped batches. The two are timed alternately (repeat r runs ours first when r is
even); the last line is the median over repeats of the per-repeat ratio,
``throughput ratio (ours/official-style): X.XX``.

Run it on a quiet machine: other processes on the same cores change both numbers (the ratio less).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from training import models
from training.runs.official import convert_official_state_dict
from training.snn.losses import tet_loss
from training.snn.neurons import LIF

try:
    from benchmarks.official_style import OfficialResNet19, tet_loss_official
except ModuleNotFoundError:  # run as a file: python benchmarks/train_throughput.py
    from official_style import OfficialResNet19, tet_loss_official

LAMB = 0.05  # TET lambda for CIFAR (paper)
OURS, OFFICIAL = "ours", "official-style"


@dataclass
class Contender:
    """One implementation of the training step."""

    name: str
    model: nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]  # (model outputs, labels [B]) -> scalar
    optimizer: torch.optim.Optimizer
    use_bf16: bool = False


def build_models(width: float, T: int, num_classes: int, seed: int) -> tuple[nn.Module, nn.Module]:
    """Our and the official-style ResNet-19 with the same (PyTorch default) initial weights.

    Returns:
        ``(ours, official)`` in float32 on the CPU, train mode.
    """
    with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG
        torch.manual_seed(seed)
        official = OfficialResNet19(num_classes, 3, T, width)
    ours = models.build("resnet19", num_classes=num_classes, T=T, width=width)
    ours.load_state_dict(convert_official_state_dict(official.state_dict(), "resnet19"))
    return ours, official


def _official_as_ours(official: nn.Module, replace: dict[int, Tensor] | None = None) -> dict:
    """The official state dict under our keys; ``replace`` maps ``id(parameter)`` to a tensor."""
    replace = replace or {}
    state = official.state_dict(keep_vars=True)  # the Parameter objects, for their ids
    state = {key: replace.get(id(value), value).detach() for key, value in state.items()}
    return convert_official_state_dict(state, "resnet19")


def check_same_step(ours: nn.Module, official: nn.Module, x: Tensor, y: Tensor) -> float:
    """Compare loss, parameter gradients and BN running statistics on float64 copies.

    Args:
        ours: Our model; official: the official-style model with the same weights. Neither is
            changed: the forward (train mode, updating BN statistics) runs on copies.
        x: Images ``[B, C, H, W]``.
        y: Labels ``[B]``.

    Returns:
        The largest relative difference ``||a - b|| / ||b||`` over the loss, every gradient and
        every floating-point state tensor after the forward.

    Raises:
        RuntimeError: If it exceeds 1e-9 (the two would not compute the same thing).
    """
    a, b = copy.deepcopy(ours).double().cpu(), copy.deepcopy(official).double().cpu()
    x, y = x.double().cpu(), y.cpu()
    loss_a, loss_b = tet_loss(a(x), y, LAMB, 1.0), tet_loss_official(b(x), y, LAMB)
    names, params_a = zip(*a.named_parameters())
    grads_a = dict(zip(names, torch.autograd.grad(loss_a, params_a)))
    params_b = list(b.parameters())
    grads_b = _official_as_ours(
        b, dict(zip(map(id, params_b), torch.autograd.grad(loss_b, params_b)))
    )
    state_b = _official_as_ours(b)
    pairs = [(loss_a, loss_b)] + [(grad, grads_b[name]) for name, grad in grads_a.items()]
    pairs += [(v, state_b[k]) for k, v in a.state_dict().items() if v.is_floating_point()]
    diff = max(((u - v).norm() / v.norm().clamp(min=1e-12)).item() for u, v in pairs)
    if not diff <= 1e-9:
        raise RuntimeError(f"ours and official-style differ by {diff:.3g} (relative) in float64")
    return diff


def train_step(contender: Contender, x: Tensor, y: Tensor) -> Tensor:
    """Forward, loss, backward and optimizer step; returns the detached loss (no sync)."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=contender.use_bf16):
        loss = contender.loss_fn(contender.model(x), y)
    contender.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    contender.optimizer.step()
    return loss.detach()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
"""wall: elapsed time. process: CPU time of this process, which a busy machine inflates far less
(meaningful with ``--threads 1`` on the CPU; OpenMP threads that spin-wait add CPU time)."""


def time_steps(
    contender: Contender,
    batches: list[tuple[Tensor, Tensor]],
    num_steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Images per second of ``clock`` over ``num_steps`` steps (cycling through ``batches``)."""
    device = batches[0][0].device
    _synchronize(device)
    start = clock()
    for step in range(num_steps):
        loss = train_step(contender, *batches[step % len(batches)])
    if not torch.isfinite(loss):
        raise RuntimeError(f"{contender.name}: loss became {loss.item()}")
    _synchronize(device)
    return num_steps * len(batches[0][1]) / (clock() - start)


def measure_alternately(
    contenders: list[Contender],
    batches: list[tuple[Tensor, Tensor]],
    num_steps: int,
    num_repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Images/s of each contender per repeat; the order alternates so drifts in load hit both."""
    results: dict[str, list[float]] = {c.name: [] for c in contenders}
    for repeat in range(num_repeats):
        for contender in contenders if repeat % 2 == 0 else contenders[::-1]:
            results[contender.name].append(time_steps(contender, batches, num_steps, clock))
            print(
                f"repeat {repeat + 1}: {contender.name} {results[contender.name][-1]:.1f}/s",
                file=sys.stderr,
            )
    return results


def peak_memory(contender: Contender, batch: tuple[Tensor, Tensor]) -> float | None:
    """Peak CUDA memory (MiB) allocated during one training step, or None on the CPU.

    It counts everything allocated on the device then, the other contender's weights included.
    """
    device = batch[0].device
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    train_step(contender, *batch)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def configure_ours(
    model: nn.Module, use_fused_lif: bool, use_static_stem: bool, use_channels_last: bool
) -> None:
    """Switch our fast paths on or off (fused LIF and static stem are ``training``'s default)."""
    model.use_static_stem = use_static_stem
    for module in model.modules():
        if isinstance(module, LIF):
            module.use_fused = use_fused_lif
    if use_channels_last:  # 4-D weights only; conv outputs then follow, inputs may stay NCHW
        model.to(memory_format=torch.channels_last)


def make_contender(
    name: str, model: nn.Module, device: torch.device, args: argparse.Namespace
) -> Contender:
    """Move to the device (the memory format is kept), compile if asked; SGD with momentum."""
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if args.compile:
        model = torch.compile(model)
    if name == OURS:
        loss_fn = lambda outputs, y: tet_loss(outputs, y, LAMB, 1.0)  # noqa: E731
    else:
        loss_fn = lambda outputs, y: tet_loss_official(outputs, y, LAMB)  # noqa: E731
    return Contender(name, model, loss_fn, optimizer, args.bf16)


def random_batches(
    num_batches: int, batch_size: int, image_size: int, num_classes: int, seed: int
) -> list[tuple[Tensor, Tensor]]:
    """CIFAR-shaped standard-normal images ``[B, 3, H, W]`` and uniform labels ``[B]`` (CPU)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, 3, image_size, image_size, generator=generator),
            torch.randint(0, num_classes, (batch_size,), generator=generator),
        )
        for _ in range(num_batches)
    ]


def report(results: dict[str, list[float]], memory: dict[str, float | None]) -> None:
    """Print the median images/s (and peak memory) per contender, then the ratio line.

    The ratio is the median over repeats of ours / official-style within the repeat: the two
    were timed back to back, so a change in machine load between repeats cancels.
    """
    for name, values in results.items():
        line = f"{name:>15}: {statistics.median(values):9.1f} images/s "
        line += f"(median of {len(values)}, range {min(values):.1f}-{max(values):.1f})"
        if memory.get(name) is not None:
            line += f", peak memory {memory[name]:.0f} MiB"
        print(line)
    if len(results) == 2:
        paired = [a / b for a, b in zip(results[OURS], results[OFFICIAL])]
        print(f"ratio per repeat: {', '.join(f'{r:.2f}' for r in paired)}")
        print(f"throughput ratio (ours/official-style): {statistics.median(paired):.2f}")


DRY_RUN = {"width": 1 / 16, "batch_size": 4, "image_size": 8, "T": 2, "steps": 1, "repeats": 2}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--model", default="resnet19", choices=["resnet19"], help="model (default: %(default)s)")
    add("--width", type=float, default=0.25, help="channel multiplier (default: %(default)s)")
    add("--batch-size", type=int, default=32, help="images per step (default: %(default)s)")
    add("--T", type=int, default=4, help="time steps (default: %(default)s)")
    add("--image-size", type=int, default=32, help="height = width (default: %(default)s)")
    add("--num-classes", type=int, default=10, help="classes (default: %(default)s)")
    add(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: cuda if available (default: %(default)s)",
    )
    add("--steps", type=int, default=1, help="timed steps per repeat (default: %(default)s)")
    add("--repeats", type=int, default=7, help="alternating repeats (default: %(default)s)")
    add("--warmup", type=int, default=1, help="untimed steps each (default: %(default)s)")
    add("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    add(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall time, or CPU time of the process (CPU only) (default: %(default)s)",
    )
    add("--seed", type=int, default=0, help="weights and data seed (default: %(default)s)")
    add(
        "--only",
        default="both",
        choices=["both", OURS, OFFICIAL],
        help="which implementation(s) to time (default: %(default)s)",
    )
    flag = lambda name, default, text: add(  # noqa: E731
        name,
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{text} (default: %(default)s)",
    )
    flag("--fused-lif", True, "ours: fused LIF Function")
    flag("--static-stem", True, "ours: run the first conv+BN once per image")
    flag("--channels-last", False, "ours: channels-last memory format")
    flag("--compile", False, "torch.compile both models (no double backward)")
    flag("--bf16", False, "bfloat16 autocast for both")
    flag("--cudnn-benchmark", True, "cuda: let cuDNN pick conv algorithms (both)")
    flag("--check", True, "check in float64 that both compute the same loss and gradients")
    add("--dry-run", action="store_true", help=f"tiny settings for smoke tests: {DRY_RUN}")
    return parser


def _device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def run(args: argparse.Namespace, device: torch.device) -> None:
    """Build, check, warm up, time alternately and report (stdout); progress on stderr."""
    ours, official = build_models(args.width, args.T, args.num_classes, args.seed)
    configure_ours(ours, args.fused_lif, args.static_stem, args.channels_last)
    batches = random_batches(2, args.batch_size, args.image_size, args.num_classes, args.seed)
    if args.check:
        diff = check_same_step(ours, official, batches[0][0][:2], batches[0][1][:2])
        print(f"same loss, gradients and BN statistics in float64 (max rel. diff {diff:.1e})")
    names = [OURS, OFFICIAL] if args.only == "both" else [args.only]
    by_name = {OURS: ours, OFFICIAL: official}
    contenders = [make_contender(name, by_name[name], device, args) for name in names]
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    for contender in contenders:
        start = time.perf_counter()
        for _ in range(args.warmup):
            train_step(contender, *batches[0])
        _synchronize(device)
        print(f"{contender.name}: warm-up {time.perf_counter() - start:.1f} s", file=sys.stderr)
    memory = {contender.name: peak_memory(contender, batches[0]) for contender in contenders}
    print(
        f"{args.model} width {args.width:g}, batch {args.batch_size}, T {args.T}, "
        f"{args.image_size}x{args.image_size}, {device}, threads {torch.get_num_threads()}, "
        f"bf16 {args.bf16}, compile {args.compile}, channels-last {args.channels_last}, "
        f"fused LIF {args.fused_lif}, static stem {args.static_stem}, {args.clock} clock, "
        f"torch {torch.__version__}"
    )
    results = measure_alternately(contenders, batches, args.steps, args.repeats, CLOCKS[args.clock])
    report(results, memory)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dry_run:
        vars(args).update(DRY_RUN)
    if min(args.batch_size, args.T, args.steps, args.repeats, args.image_size) < 1:
        parser.error("--batch-size, --T, --steps, --repeats and --image-size must be >= 1")
    device = _device(parser, args.device)
    if args.clock == "process" and device.type != "cpu":
        parser.error("--clock process measures CPU time; use it with --device cpu")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    run(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Paths between two minima and the fit of a curve's middle point.

Garipov et al. (2018), "Loss surfaces, mode connectivity, and fast ensembling of DNNs", Sec. 3:
a quadratic Bezier curve ``phi(t) = (1 - t)^2 w_a + 2 t (1 - t) theta + t^2 w_b`` and a polygonal
chain with one bend at ``theta`` (``t = 1/2``) join the ends ``w_a``, ``w_b``; theta is trained to
minimize the loss averaged over ``t ~ U[0, 1]``, one ``t`` per step, the ends fixed. Every
parameter lies on the curve; BatchNorm running statistics do not (the model is trained in train
mode, on batch statistics) and are recomputed where the curve is evaluated
(:mod:`analysis.connectivity.profile`). With ``theta = (w_a + w_b) / 2`` both curves are the
straight line, which is where the fit starts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from training.data.datasets import TensorLoader

__all__ = ["PATHS", "CURVES", "CurveStep", "path_point", "midpoint", "fit_curve"]

PATHS = ("line", "bezier", "polychain")
CURVES = ("bezier", "polychain")
_T_STREAM = 7_919  # the t draws' stream, apart from the loader's shuffling


def path_point(
    kind: str, t: float, start: dict[str, Tensor], middle: dict[str, Tensor] | None, end: dict
) -> dict[str, Tensor]:
    """The point at ``t`` in ``[0, 1]`` of a path, for every tensor of ``start``.

    Args:
        kind: ``line`` (``(1 - t) a + t b``; ``middle`` unused), ``bezier`` or ``polychain``.
        t: The position along the path.
        start: The tensors at ``t = 0`` (name -> tensor).
        middle: The bend (name -> tensor), for curves.
        end: The tensors at ``t = 1``.

    Raises:
        ValueError: On an unknown kind or a ``t`` outside ``[0, 1]``.
    """
    if kind not in PATHS:
        raise ValueError(f"unknown path {kind!r}; expected one of {PATHS}")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    if kind == "line":
        return {k: (1 - t) * a + t * end[k] for k, a in start.items()}
    if kind == "bezier":
        return {
            k: (1 - t) ** 2 * a + 2 * t * (1 - t) * middle[k] + t**2 * end[k]
            for k, a in start.items()
        }
    if t <= 0.5:  # convex weights, so that the ends are exact
        return {k: (1 - 2 * t) * a + 2 * t * middle[k] for k, a in start.items()}
    return {k: (2 - 2 * t) * middle[k] + (2 * t - 1) * end[k] for k in start}


def midpoint(start: dict[str, Tensor], end: dict[str, Tensor]) -> dict[str, Tensor]:
    """``(a + b) / 2`` of every tensor (the start of a fit: the curve is then the line)."""
    return {k: (a + end[k]) / 2 for k, a in start.items()}


@dataclass(frozen=True)
class CurveStep:
    """One epoch of a curve fit.

    Attributes:
        epoch: Epochs done (1 after the first).
        loss: Mean training loss over the epoch's steps (at their random ``t``).
        middle: The bend after the epoch (detached copies).
        optimizer: The optimizer's state dict after the epoch.
        lr: The learning rate the epoch used.
    """

    epoch: int
    loss: float
    middle: dict[str, Tensor]
    optimizer: dict
    lr: float


def fit_curve(
    kind: str,
    model: nn.Module,
    start: dict[str, Tensor],
    end: dict[str, Tensor],
    loader: TensorLoader,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    epochs: int,
    lr: float,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    resume: CurveStep | None = None,
) -> Iterator[CurveStep]:
    """Train the bend of a curve (Garipov et al. 2018): yields one :class:`CurveStep` per epoch.

    Each step draws ``t ~ U[0, 1]`` from a generator seeded by ``(seed, epoch)`` and takes one
    optimizer step on the bend for ``loss_fn(model at phi(t), y)``; the model runs in train
    mode (BatchNorm on batch statistics) on a copy, the ends never change. The optimizer and its
    cosine schedule to 0 over ``epochs``, set per epoch, are the trainer's
    (``training.runs.run_state``). Batches are ``loader``'s shuffled order of each epoch, so a
    fit resumed from a step gives the same bend as one that ran through.

    Args:
        kind: ``bezier`` or ``polychain``.
        model: The architecture (not changed; a copy is trained).
        start: The parameters at ``t = 0`` (name -> tensor, every trainable parameter).
        end: The parameters at ``t = 1``.
        loader: Training batches; must shuffle.
        loss_fn: ``(outputs [T, B, C], labels [B]) -> mean loss``.
        epochs: Epochs of the whole fit.
        lr: Initial learning rate.
        optimizer: ``adam`` or ``sgd``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay of the bend.
        seed: Seed of the ``t`` draws (the loader has its own).
        resume: The last step of an interrupted fit.

    Raises:
        ValueError: On a bad kind, optimizer or epoch count, or ends that differ in keys.
    """
    if kind not in CURVES:
        raise ValueError(f"a fitted curve is one of {CURVES}, got {kind!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if set(start) != set(end):
        raise ValueError("the two ends have different parameters")
    work = copy.deepcopy(model).train()
    for parameter in work.parameters():
        parameter.requires_grad_(False)
    source = resume.middle if resume is not None else midpoint(start, end)
    middle = {k: v.detach().clone().requires_grad_(True) for k, v in source.items()}
    if optimizer == "adam":
        opt = torch.optim.Adam(middle.values(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(middle.values(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    first = 0
    if resume is not None:
        opt.load_state_dict(resume.optimizer)
        first = resume.epoch
    ends = ({k: v.detach() for k, v in start.items()}, {k: v.detach() for k, v in end.items()})
    for epoch in range(first, epochs):
        draws = torch.Generator().manual_seed(seed * 1_000_003 + epoch + _T_STREAM)
        rate = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2  # CosineAnnealingLR's closed form
        for group in opt.param_groups:
            group["lr"] = rate
        total, steps = 0.0, 0
        for x, y in loader.batches(epoch):
            t = float(torch.rand((), generator=draws, dtype=torch.float64))
            weights = path_point(kind, t, ends[0], middle, ends[1])
            loss = loss_fn(functional_call(work, weights, (x,)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        state = copy.deepcopy(opt.state_dict())
        snapshot = {k: v.detach().clone() for k, v in middle.items()}
        yield CurveStep(epoch + 1, total / max(steps, 1), snapshot, state, rate)

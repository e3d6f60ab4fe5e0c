"""The problem of :mod:`landscape.api` in the engine's form: a module, a mean criterion, batches.

``(model, criterion, data)`` is used as given. ``(model, loss_fn, data)`` with
``loss_fn(model, batch) -> mean loss`` becomes :class:`LossClosure`, a module whose input is a
batch index and whose output is that batch's loss, with dummy targets of the batch's size, so the
engine weights every batch by its size in both forms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from landscape.objective import Objective
from landscape.reset import Reset, resolve_reset

__all__ = [
    "Problem",
    "LossClosure",
    "make_problem",
    "build_objective",
    "resolve_setting",
    "as_batches",
]

Criterion = Callable[[Tensor, Tensor], Tensor]
LossFn = Callable[[nn.Module, object], Tensor]


class LossClosure(nn.Module):
    """``loss_fn(model, batch)`` as a module: input ``[i]`` -> the loss of batch ``i``."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: list) -> None:
        super().__init__()
        self.model, self._loss_fn, self._batches = model, loss_fn, batches

    def forward(self, index: Tensor) -> Tensor:
        return self._loss_fn(self.model, self._batches[int(index[0])])


@dataclass
class Problem:
    module: nn.Module  # the model, or a _Closure around it
    criterion: Criterion  # (outputs, targets) -> batch mean
    batches: list[tuple[Tensor, Tensor]]
    reset: Callable[[nn.Module], None] | None
    dtype: torch.dtype
    device: torch.device
    param_names: list[str] | None = None  # differentiate these only (default: all)


def as_batches(data) -> list:
    if data is None:
        raise ValueError("data must be one (x, y) batch or an iterable of batches")
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [data]  # one (x, y) batch
    batches = list(data)
    if not batches:
        raise ValueError("data holds no batches")
    return batches


def _size(batch) -> int:
    last = batch[-1] if isinstance(batch, (tuple, list)) else batch
    if isinstance(last, Mapping):
        last = next(iter(last.values()))
    if not isinstance(last, Tensor) or last.ndim == 0:
        raise ValueError("with loss_fn, each batch must be a tensor or end with a tensor (targets)")
    return int(last.shape[0])


def _cast(value, dtype: torch.dtype, device: torch.device):
    if isinstance(value, Tensor):
        return value.to(device, dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, (tuple, list)):
        return type(value)(_cast(v, dtype, device) for v in value)
    if isinstance(value, Mapping):
        return {k: _cast(v, dtype, device) for k, v in value.items()}
    return value


def resolve_setting(model: nn.Module, reset: Reset, dtype, device) -> tuple:
    """``(reset hook or None, dtype, device)`` of a problem: the model's dtype and device unless
    given, and the neuron-state reset found on the model (see :func:`resolve_reset`)."""
    reference = next(iter(model.parameters()), None)
    if reference is None:
        raise ValueError("model has no parameters")
    dtype = dtype or reference.dtype
    device = torch.device(device) if device is not None else reference.device
    hook = resolve_reset(model, reset)
    user_reset = None if hook is None else (lambda _module: hook(model))  # always the user's model
    return user_reset, dtype, device


def make_problem(
    model, criterion, data, loss_fn, reset: Reset, dtype, device, param_names=None
) -> Problem:
    """The problem in the engine's form: a module, a mean criterion and ``(x, y)`` batches."""
    user_reset, dtype, device = resolve_setting(model, reset, dtype, device)
    batches = as_batches(data)
    if (criterion is None) == (loss_fn is None):
        raise ValueError("give exactly one of criterion (with (x, y) batches) and loss_fn")
    if loss_fn is None:
        batches = [tuple(b) for b in batches]
        return Problem(model, criterion, batches, user_reset, dtype, device, param_names)
    batches = [_cast(batch, dtype, device) for batch in batches]
    indices = [
        (torch.tensor([i], device=device), torch.zeros(_size(b), device=device))
        for i, b in enumerate(batches)
    ]
    closure = LossClosure(model, loss_fn, batches)
    names = None if param_names is None else [f"model.{name}" for name in param_names]
    return Problem(closure, lambda loss, _: loss, indices, user_reset, dtype, device, names)


def build_objective(p: Problem) -> Objective:
    """The :class:`~landscape.objective.Objective` of the problem, with its reset."""
    return Objective(
        p.module,
        p.criterion,
        p.batches,
        param_names=p.param_names,
        dtype=p.dtype,
        device=p.device,
        before_forward=p.reset,
        reset=None if p.reset else False,
    )

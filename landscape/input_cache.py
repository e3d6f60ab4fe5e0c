"""The input-layer cache of the surface engine, and BatchNorm re-estimation.

The first ``Linear``/``Conv`` layer whose input depends on no parameter or buffer (found by a probe
forward) is linear in its weights along the grid: per batch the engine computes ``F(u, W0)`` and
``F(u, d_i)`` once and, per point, only ``F(u, W0) + sum_i c_i F(u, d_i)``. When ``u`` repeats the
same samples (a static image repeated over ``T`` time steps) the layer runs on one copy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from landscape.objective import eval_mode

__all__ = ["InputCache", "probe_input_layer", "build_cache", "cumulative_batchnorm"]

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _Captured(Exception):
    def __init__(self, value: Tensor) -> None:
        self.value = value


@contextmanager
def cumulative_batchnorm(model: nn.Module) -> Iterator[list[str]]:
    """BatchNorm layers in train mode with ``momentum=None`` (exact averages); restored after."""
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    saved = [(module, module.momentum, module.training) for _, module in layers]
    for _, module in layers:
        module.momentum, module.training = None, True
    try:
        yield [name for name, _ in layers]
    finally:
        for module, momentum, training in saved:
            module.momentum, module.training = momentum, training


@dataclass
class InputCache:
    """``F(u, W0 + sum_i c_i d_i) = base + sum_i c_i terms[i]`` for the input layer on one batch."""

    base: Tensor
    terms: list[Tensor | None]
    repeats: int
    input_shape: torch.Size

    def _once(self, coords: Sequence[float]) -> Tensor:
        out = self.base
        for c, term in zip(coords, self.terms):
            if term is not None and c != 0:
                out = torch.add(out, term, alpha=c)
        return out

    def _repeated(self, out: Tensor) -> Tensor:
        if self.repeats > 1:
            out = out.unsqueeze(0).expand(self.repeats, *out.shape).reshape(-1, *out.shape[1:])
        return out

    def output(self, coords: Sequence[float]) -> Tensor:
        """The layer's output at one point."""
        return self._repeated(self._once(coords))

    def stacked_output(self, points: Sequence[Sequence[float]], dim: int) -> Tensor:
        """The outputs at ``K`` points side by side along ``dim`` (channels)."""
        return self._repeated(torch.cat([self._once(coords) for coords in points], dim=dim))


def capture_input(model: nn.Module, name: str, tensors: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """The input of layer ``name`` in a forward that stops there."""

    def capture(module: nn.Module, inputs: tuple) -> None:
        raise _Captured(inputs[0])

    handle = model.get_submodule(name).register_forward_pre_hook(capture)
    try:
        functional_call(model, tensors, (x,))
    except _Captured as captured:
        return captured.value
    finally:
        handle.remove()
    raise RuntimeError(f"input layer {name!r} was not called")


def probe_input_layer(model: nn.Module, centre: Mapping[str, Tensor], x: Tensor) -> str | None:
    """The first linear layer if its input depends on no parameter and no buffer."""
    calls: list[tuple[str, bool]] = []
    handles = [
        module.register_forward_pre_hook(
            lambda m, inputs, name=name: calls.append((name, inputs[0].requires_grad))
        )
        for name, module in model.named_modules()
        if isinstance(module, _LINEAR)
    ]
    names = {name for name, _ in model.named_parameters()}
    leaves = {n: t.clone().requires_grad_(n in names) for n, t in centre.items()}
    try:
        with torch.enable_grad(), eval_mode(model):
            functional_call(model, leaves, (x,))
    finally:
        for handle in handles:
            handle.remove()
    if not calls or calls[0][1] or [name for name, _ in calls].count(calls[0][0]) != 1:
        return None
    shifted = {n: t * 1.5 + 0.5 if t.is_floating_point() else t for n, t in centre.items()}
    with torch.no_grad(), eval_mode(model):
        same = torch.equal(
            capture_input(model, calls[0][0], centre, x),
            capture_input(model, calls[0][0], shifted, x),
        )
    return calls[0][0] if same else None


def build_cache(
    model: nn.Module,
    name: str,
    centre: Mapping[str, Tensor],
    directions: Sequence[Mapping[str, Tensor]],
    x: Tensor,
    batch_size: int,
) -> InputCache:
    """The input layer ``name``'s output at the centre and along each direction, on one batch."""
    module = model.get_submodule(name)
    u = capture_input(model, name, centre, x)
    shape, repeats = u.shape, 1
    if u.shape[0] > batch_size and u.shape[0] % batch_size == 0:
        copies = u.reshape(u.shape[0] // batch_size, batch_size, *u.shape[1:])
        if all(torch.equal(copies[0], copy) for copy in copies[1:]):
            u, repeats = copies[0], len(copies)
    keys = [k for k in ("weight", "bias") if f"{name}.{k}" in centre]
    base = functional_call(module, {k: centre[f"{name}.{k}"] for k in keys}, (u,))
    terms = []
    for d in directions:
        moved = {k: d[f"{name}.{k}"] for k in keys if f"{name}.{k}" in d}
        zeros = {k: torch.zeros_like(centre[f"{name}.{k}"]) for k in keys}
        terms.append(functional_call(module, {**zeros, **moved}, (u,)) if moved else None)
    return InputCache(base, terms, repeats, shape)

"""Loss-surface engine: metrics of a model at the points ``theta = centre + sum_i c_i d_i``.

One :class:`SurfaceEvaluator` evaluates a chunk of grid points in one pass over fixed batches
(data outer, points inner), under ``torch.inference_mode``, through ``torch.func.functional_call``
(the model is never mutated). Per point it returns the sample-weighted mean of every metric of
``metrics_fn`` plus, with an ``observer``, the firing rate of every layer it reports.

Exact speed-ups (the same values up to float rounding; tests compare them in float64):

- *Input-layer cache.* The first ``Linear``/``Conv`` layer whose input depends on no parameter or
  buffer (found by a probe forward) is linear in its weights along the grid, so per batch the
  engine computes ``F(u, W0)`` and ``F(u, d_i)`` once and, per point, only
  ``F(u, W0) + sum_i c_i F(u, d_i)``. When ``u`` repeats the same samples (a static image repeated
  over ``T`` time steps) the layer runs on one copy.
- *Optional* ``torch.compile`` of the forward (it then replaces the cache).

BatchNorm: ``bn_mode="eval"`` uses the running statistics of the centre (or of the interpolated
point, when the directions move buffers); ``"recompute"`` re-estimates them at every point as the
equal-weight average over ``bn_batches`` (momentum ``None``) in train mode, then evaluates in eval
mode. Grids are evaluated in chunks written by :class:`SurfaceStore`, so a killed run resumes and
several processes can share a grid (chunk ``c`` belongs to rank ``c % world_size``).

``SurfaceStore``/``iter_surface`` live in :mod:`landscape.store` and ``Surface`` with its files in
:mod:`landscape.surface_io`; both are re-exported here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from landscape.objective import eval_mode
from landscape.store import SurfaceStore, iter_surface
from landscape.surface_io import Surface, load_surface, load_surface_frame, save_surface

__all__ = [
    "BN_MODES",
    "Grid",
    "SurfaceEvaluator",
    "SurfaceStore",
    "iter_surface",
    "Surface",
    "save_surface",
    "load_surface",
    "load_surface_frame",
]

BN_MODES = ("eval", "recompute")
MetricsFn = Callable[[Tensor, Tensor], Mapping[str, Tensor]]
"""``metrics_fn(outputs, labels) -> {name: sum over the batch}`` (sums, not means)."""
Observer = Callable[[nn.Module], AbstractContextManager]
"""Context manager over the model yielding ``{layer: [count, total]}`` that grows per forward."""
_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Grid:
    """A 1-D or 2-D grid of coordinates; points are ordered x-major (``indexing="ij"``).

    Attributes:
        axes: One tuple of coordinates per direction, e.g. ``(xs,)`` or ``(xs, ys)``.
    """

    axes: tuple[tuple[float, ...], ...]

    @classmethod
    def linspace(cls, *ranges: tuple[float, float, int]) -> Grid:
        """A grid from ``(low, high, num)`` per axis.

        Raises:
            ValueError: On more than two axes, ``low >= high`` or ``num < 1``.

        Example:
            >>> Grid.linspace((-1, 1, 3), (0, 1, 2)).coordinates().tolist()
            [[-1.0, 0.0], [-1.0, 1.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
        """
        if not 1 <= len(ranges) <= 2:
            raise ValueError(f"a grid has 1 or 2 axes, got {len(ranges)}")
        for low, high, num in ranges:
            if int(num) < 1 or not np.isfinite([low, high]).all() or (num > 1 and low >= high):
                raise ValueError(f"grid range must be low:high:num with low < high, num >= 1; got "
                                 f"{low}:{high}:{num}")  # fmt: skip
        return cls(tuple(tuple(np.linspace(lo, hi, int(n)).tolist()) for lo, hi, n in ranges))

    @property
    def shape(self) -> tuple[int, ...]:
        """``(nx,)`` or ``(nx, ny)``."""
        return tuple(len(axis) for axis in self.axes)

    @property
    def num_points(self) -> int:
        """Number of grid points."""
        return int(np.prod(self.shape))

    def coordinates(self) -> Tensor:
        """All points, ``[num_points, D]`` float64, x-major."""
        axes = [torch.tensor(axis, dtype=torch.float64) for axis in self.axes]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)


class _Captured(Exception):
    def __init__(self, value: Tensor) -> None:
        self.value = value


@contextmanager
def _replaced_forward(module: nn.Module, function: Callable) -> Iterator[None]:
    previous = module.__dict__.get("forward")
    module.forward = function
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous


@contextmanager
def _cumulative_batchnorm(model: nn.Module) -> Iterator[list[str]]:
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
class _InputCache:
    """``F(u, W0 + sum_i c_i d_i) = base + sum_i c_i terms[i]`` for the input layer on one batch."""

    base: Tensor
    terms: list[Tensor | None]
    repeats: int
    input_shape: torch.Size

    def output(self, coords: Sequence[float]) -> Tensor:
        out = self.base
        for c, term in zip(coords, self.terms):
            if term is not None and c != 0:
                out = torch.add(out, term, alpha=c)
        if self.repeats > 1:
            out = out.unsqueeze(0).expand(self.repeats, *out.shape).reshape(-1, *out.shape[1:])
        return out


class SurfaceEvaluator:
    """Metrics of ``model`` at points ``centre + sum_i c_i d_i`` over fixed batches.

    Args:
        model: Any module; never modified (modes and BatchNorm momenta are restored).
        directions: ``D`` directions, name -> tensor (parameters or floating buffers).
        batches: ``(inputs, labels)`` pairs, kept on ``device``.
        metrics_fn: ``(outputs, labels) -> {name: batch sum}``; the result is the mean per sample.
        centre: name -> tensor replacing the model's parameters/buffers at ``c = 0`` (default:
            the model's own).
        observer: E.g. ``training.trainer.spike_counter``; adds ``firing_rate`` and
            ``rate/<layer>``.
        bn_mode: ``"eval"`` or ``"recompute"`` (see the module docstring).
        bn_batches: Inputs for ``"recompute"``.
        use_input_cache: Use the input-layer cache when the model allows it.
        use_compile: ``torch.compile`` the forward (disables the cache).
        use_channels_last: Store 4-D weights, directions and inputs channels-last (NHWC); on CPU
            pooling over spikes runs several times faster in that layout.
        dtype: Floating dtype of parameters, buffers and inputs (default: the model's).
        device: Device (default: the model's).

    Raises:
        ValueError: On unknown direction names, misshaped tensors, empty batches or bad modes.
    """

    def __init__(
        self,
        model: nn.Module,
        directions: Sequence[Mapping[str, Tensor]],
        batches: Iterable[tuple[Tensor, Tensor]],
        metrics_fn: MetricsFn,
        *,
        centre: Mapping[str, Tensor] | None = None,
        observer: Observer | None = None,
        bn_mode: str = "eval",
        bn_batches: Iterable[Tensor] = (),
        use_input_cache: bool = True,
        use_compile: bool = False,
        use_channels_last: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        reference = next(iter(model.parameters()))
        self.dtype, self.device = dtype or reference.dtype, torch.device(device or reference.device)
        self.model, self.metrics_fn, self.observer = model, metrics_fn, observer
        self.use_channels_last = use_channels_last
        self.use_input_cache, self.use_compile = use_input_cache and not use_compile, use_compile
        state = {**dict(model.named_parameters()), **dict(model.named_buffers()), **(centre or {})}
        self._centre = {name: self._cast(t) for name, t in state.items()}
        self._directions = [self._check_direction(i, d) for i, d in enumerate(directions)]
        self._batches = [(self._cast(x), y.to(self.device)) for x, y in batches]
        self._bn_batches = [self._cast(x) for x in bn_batches]
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        if not self._batches or (bn_mode == "recompute" and not self._bn_batches):
            raise ValueError("batches (and bn_batches for bn_mode='recompute') must not be empty")
        self.bn_mode, self.num_samples = bn_mode, sum(len(y) for _, y in self._batches)
        self._layer: str | None | bool = False  # False: not probed yet
        self._compiled: Callable | None = None

    def _cast(self, tensor: Tensor) -> Tensor:
        dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
        tensor = tensor.detach().to(self.device, dtype)
        if self.use_channels_last and tensor.ndim == 4:
            return tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def _check_direction(self, index: int, direction: Mapping[str, Tensor]) -> dict[str, Tensor]:
        bad = [
            n
            for n, t in direction.items()
            if n not in self._centre
            or self._centre[n].shape != t.shape
            or not self._centre[n].is_floating_point()
        ]
        if bad:
            raise ValueError(f"direction {index}: unknown, misshaped or integer tensors {bad[:5]}")
        return {name: self._cast(t) for name, t in direction.items()}

    @property
    def dim(self) -> int:
        """Number of directions ``D``."""
        return len(self._directions)

    @property
    def input_layer(self) -> str | None:
        """Name of the cached input layer (None: no cache); probes the model on first use."""
        if self._layer is False:
            self._layer = self._probe_input_layer() if self.use_input_cache else None
        return self._layer

    def point(self, coords: Sequence[float]) -> dict[str, Tensor]:
        """Parameters and buffers at ``centre + sum_i coords[i] d_i`` (name -> tensor)."""
        if len(coords) != self.dim:
            raise ValueError(f"a point needs {self.dim} coordinates, got {len(coords)}")
        tensors = dict(self._centre)
        for c, direction in zip(coords, self._directions):
            if c != 0:
                for name, d in direction.items():
                    tensors[name] = tensors[name] + c * d
        return tensors

    def _probe_input_layer(self) -> str | None:
        """The first linear layer if its input depends on no parameter and no buffer."""
        calls: list[tuple[str, bool]] = []
        handles = [
            module.register_forward_pre_hook(
                lambda m, inputs, name=name: calls.append((name, inputs[0].requires_grad))
            )
            for name, module in self.model.named_modules()
            if isinstance(module, _LINEAR)
        ]
        names = {name for name, _ in self.model.named_parameters()}
        leaves = {n: t.clone().requires_grad_(n in names) for n, t in self._centre.items()}
        x = self._batches[0][0][:2]
        try:
            with torch.enable_grad(), eval_mode(self.model):
                functional_call(self.model, leaves, (x,))
        finally:
            for handle in handles:
                handle.remove()
        if not calls or calls[0][1] or [name for name, _ in calls].count(calls[0][0]) != 1:
            return None
        shifted = {
            n: t * 1.5 + 0.5 if t.is_floating_point() else t for n, t in self._centre.items()
        }
        with torch.no_grad(), eval_mode(self.model):
            same = torch.equal(
                self._capture(calls[0][0], self._centre, x), self._capture(calls[0][0], shifted, x)
            )
        return calls[0][0] if same else None

    def _capture(self, name: str, tensors: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """The input of layer ``name`` in a forward that stops there."""

        def capture(module: nn.Module, inputs: tuple) -> None:
            raise _Captured(inputs[0])

        handle = self.model.get_submodule(name).register_forward_pre_hook(capture)
        try:
            functional_call(self.model, tensors, (x,))
        except _Captured as captured:
            return captured.value
        finally:
            handle.remove()
        raise RuntimeError(f"input layer {name!r} was not called")

    def _build_cache(self, name: str, x: Tensor, batch_size: int) -> _InputCache:
        module = self.model.get_submodule(name)
        u = self._capture(name, self._centre, x)
        shape, repeats = u.shape, 1
        if u.shape[0] > batch_size and u.shape[0] % batch_size == 0:
            copies = u.reshape(u.shape[0] // batch_size, batch_size, *u.shape[1:])
            if all(torch.equal(copies[0], copy) for copy in copies[1:]):
                u, repeats = copies[0], len(copies)
        keys = [k for k in ("weight", "bias") if f"{name}.{k}" in self._centre]
        base = functional_call(module, {k: self._centre[f"{name}.{k}"] for k in keys}, (u,))
        terms = []
        for d in self._directions:
            moved = {k: d[f"{name}.{k}"] for k in keys if f"{name}.{k}" in d}
            zeros = {k: torch.zeros_like(self._centre[f"{name}.{k}"]) for k in keys}
            terms.append(functional_call(module, {**zeros, **moved}, (u,)) if moved else None)
        return _InputCache(base, terms, repeats, shape)

    def _forward(self, tensors: dict, x: Tensor, cache: _InputCache | None, coords) -> Tensor:
        if self.use_compile:
            if self._compiled is None:
                model = self.model
                self._compiled = torch.compile(
                    lambda t, inputs: functional_call(model, t, (inputs,))
                )
            return self._compiled(tensors, x)
        if cache is None:
            return functional_call(self.model, tensors, (x,))

        def cached(inputs: Tensor) -> Tensor:
            if inputs.shape != cache.input_shape:
                raise RuntimeError(f"input layer got {tuple(inputs.shape)}, cached for "
                                   f"{tuple(cache.input_shape)}")  # fmt: skip
            return cache.output(coords)

        with _replaced_forward(self.model.get_submodule(self.input_layer), cached):
            return functional_call(self.model, tensors, (x,))

    def _recompute_bn(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        with _cumulative_batchnorm(self.model) as layers:
            for name in layers:
                tensors[f"{name}.running_mean"] = torch.zeros_like(tensors[f"{name}.running_mean"])
                tensors[f"{name}.running_var"] = torch.ones_like(tensors[f"{name}.running_var"])
                tensors[f"{name}.num_batches_tracked"] = torch.zeros_like(
                    tensors[f"{name}.num_batches_tracked"]
                )
            for x in self._bn_batches:
                functional_call(self.model, tensors, (x,))
        return {k: v for name in layers for k, v in tensors.items() if k.startswith(f"{name}.")}

    def evaluate(self, coords: Tensor) -> dict[str, Tensor]:
        """Metrics at ``K`` points in one pass over the batches.

        Args:
            coords: ``[K, D]`` grid coordinates.

        Returns:
            name -> ``[K]`` float64: each ``metrics_fn`` sum divided by the number of samples; with
            an observer also ``firing_rate`` and ``rate/<layer>``.
        """
        points = [[float(c) for c in row] for row in torch.as_tensor(coords).reshape(-1, self.dim)]
        layer = self.input_layer
        sums = [defaultdict(float) for _ in points]
        spikes = [defaultdict(lambda: [0.0, 0.0]) for _ in points]
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(eval_mode(self.model))
            counts = stack.enter_context(self.observer(self.model)) if self.observer else {}
            buffers = [{}] * len(points)
            if self.bn_mode == "recompute":
                buffers = [self._recompute_bn(self.point(c)) for c in points]
            for x, y in self._batches:
                cache = self._build_cache(layer, x, len(y)) if layer else None
                for total, rates, coords, extra in zip(sums, spikes, points, buffers):
                    before = {name: tuple(value) for name, value in counts.items()}
                    outputs = self._forward({**self.point(coords), **extra}, x, cache, coords)
                    for name, value in self.metrics_fn(outputs, y).items():
                        total[name] += float(value)
                    for name, (count, size) in counts.items():
                        rates[name][0] += count - before[name][0]
                        rates[name][1] += size - before[name][1]
        return self._means(sums, spikes)

    def _means(self, sums: list[dict], spikes: list[dict]) -> dict[str, Tensor]:
        def column(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=torch.float64)

        result = {name: column([s[name] for s in sums]) / self.num_samples for name in sums[0]}
        if spikes[0]:
            totals = [[sum(c[i] for c in rates.values()) for rates in spikes] for i in (0, 1)]
            result["firing_rate"] = column(totals[0]) / column(totals[1])
            for name in spikes[0]:
                result[f"rate/{name}"] = column([r[name][0] / r[name][1] for r in spikes])
        return result

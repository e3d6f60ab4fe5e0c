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
- *Many points per forward.* ``points_per_forward`` points run as one model whose layers hold
  the points side by side (grouped convolutions, batched matmuls; :mod:`landscape.stacked`), with
  the cached input layer's outputs stacked the same way. The evaluator uses it after a probe
  forward has matched per-point forwards, and otherwise evaluates one point per forward
  (``stacking`` says which and why). An observer's hooks are relayed one point at a time.
- *Optional* ``torch.compile`` of the forward (it then replaces the cache and the stacking).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack

import torch
from torch import Tensor, nn
from torch.func import functional_call

from landscape import stacked as stacking
from landscape.input_cache import (
    InputCache,
    build_cache,
    cumulative_batchnorm,
    probe_input_layer,
)
from landscape.objective import eval_mode
from landscape.reset import Reset, resolve_reset

__all__ = ["BN_MODES", "SurfaceEvaluator"]

BN_MODES = ("eval", "recompute")
MetricsFn = Callable[[Tensor, Tensor], Mapping[str, Tensor]]
"""``metrics_fn(outputs, labels) -> {name: sum over the batch}`` (sums, not means)."""
Observer = Callable[[nn.Module], AbstractContextManager]
"""Context manager over the model yielding ``{layer: [count, total]}`` that grows per forward."""


class SurfaceEvaluator:
    """Metrics of ``model`` at points ``centre + sum_i c_i d_i`` over fixed batches.

    Args:
        model: Any module; never modified (modes and BatchNorm momenta are restored).
        directions: ``D`` directions, name -> tensor (parameters or floating buffers).
        batches: ``(inputs, labels)`` pairs, kept on ``device``.
        metrics_fn: ``(outputs, labels) -> {name: batch sum}``; the result is the mean per sample.
        centre: name -> tensor replacing the model's parameters/buffers at ``c = 0`` (default:
            the model's own).
        observer: E.g. ``training.snn.spikes.spike_counter``; adds ``firing_rate`` and
            ``rate/<layer>``. Plain forward hooks only, for stacked points.
        bn_mode: ``"eval"`` or ``"recompute"`` (see the module docstring).
        bn_batches: Inputs for ``"recompute"``.
        use_input_cache: Use the input-layer cache when the model allows it.
        use_compile: ``torch.compile`` the forward (disables the cache and stacking).
        use_channels_last: Store 4-D weights, directions and inputs channels-last (NHWC); on CPU
            pooling over spikes runs several times faster in that layout.
        points_per_forward: Grid points per forward (1: one at a time; see ``stacking``).
            ``None``: 16 on an accelerator, 1 on the CPU, where the forward of a batch is bound
            by memory traffic and stacking measured no faster.
        dtype: Floating dtype of parameters, buffers and inputs (default: the model's).
        device: Device (default: the model's).
        reset: Neuron-state reset called with the model before every forward (probe forwards
            included): a callable, ``None`` (automatic, :func:`landscape.reset.resolve_reset`) or
            ``False`` (none).

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
        points_per_forward: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        reset: Reset = None,
    ) -> None:
        reference = next(iter(model.parameters()))
        self._reset_hook = resolve_reset(model, reset)
        self.dtype, self.device = dtype or reference.dtype, torch.device(device or reference.device)
        self.model, self.metrics_fn, self.observer = model, metrics_fn, observer
        self.use_channels_last = use_channels_last
        self.use_input_cache, self.use_compile = use_input_cache and not use_compile, use_compile
        if points_per_forward is None:
            points_per_forward = 1 if self.device.type == "cpu" else 16
        if points_per_forward < 1:
            raise ValueError(f"points_per_forward must be >= 1, got {points_per_forward}")
        self.points_per_forward = 1 if use_compile else int(points_per_forward)
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
        self._plan: tuple | str | None = None  # (output dim, observer dims) or why not; None: new
        self.stacking = "not probed yet" if self.points_per_forward > 1 else "one point per forward"

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
            self._reset()
            self._layer = (
                probe_input_layer(self.model, self._centre, self._batches[0][0][:2])
                if self.use_input_cache
                else None
            )
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

    def _reset(self) -> None:
        if self._reset_hook is not None:
            self._reset_hook(self.model)

    def _cache(self, x: Tensor, batch_size: int) -> InputCache | None:
        layer = self.input_layer
        if not layer:  # None, or "" (the model itself is the layer: nothing to cache around)
            return None
        self._reset()
        return build_cache(self.model, layer, self._centre, self._directions, x, batch_size)

    def _forward(self, tensors: dict, x: Tensor, cache: InputCache | None, coords) -> Tensor:
        self._reset()
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
                raise RuntimeError(
                    f"input layer got {tuple(inputs.shape)}, cached for {tuple(cache.input_shape)}"
                )
            return cache.output(coords)

        with stacking.replaced_forward(self.model.get_submodule(self.input_layer), cached):
            return functional_call(self.model, tensors, (x,))

    def _stacked_forward(self, tensors: list[dict], x: Tensor, cache, points: list) -> Tensor:
        """One forward of ``K`` points side by side (see :mod:`landscape.stacked`)."""
        names = [n for n, t in tensors[0].items() if t.is_floating_point()]
        stacked = stacking.stack_tensors(tensors, names)
        self._reset()
        with ExitStack() as stack:
            stack.enter_context(
                stacking.stacked_layers(self.model, stacked, self.use_channels_last)
            )
            if cache is not None:
                layer = self.model.get_submodule(self.input_layer)
                dim = -1 if isinstance(layer, nn.Linear) else 1

                def cached(inputs: Tensor) -> Tensor:
                    if inputs.shape != cache.input_shape:
                        raise RuntimeError(
                            f"input layer got {tuple(inputs.shape)}, cached for "
                            f"{tuple(cache.input_shape)}"
                        )
                    return cache.stacked_output(points, dim)

                stack.enter_context(stacking.replaced_forward(layer, cached))
            return functional_call(self.model, self._centre, (x,))

    def _probe_stacking(self, observed: dict | None) -> tuple | str:
        """(output dim, observer dims) if stacked forwards match per-point ones, else why not."""
        floating = [n for n, t in self._centre.items() if t.is_floating_point()]
        reason = stacking.unstackable(self.model, floating)
        if reason is None and observed is None:
            reason = "the model has hooks other than the observer's plain forward hooks"
        if reason is not None:
            return reason
        x = self._batches[0][0][:2]
        points = [
            [0.5 - 0.25 * i for i in range(self.dim)],
            [0.25 * i - 0.75 for i in range(self.dim)],
        ]
        tensors = [self.point(c) for c in points]
        single_shapes, stacked_shapes = {}, {}
        try:
            cache = self._cache(x, len(x))
            with stacking.suspended_hooks(observed):
                with stacking.recorded_shapes(list(observed), single_shapes):
                    singles = [self._forward(t, x, cache, c) for t, c in zip(tensors, points)]
                with stacking.recorded_shapes(list(observed), stacked_shapes):
                    both = self._stacked_forward(tensors, x, cache, points)
            out_dim = stacking.stacked_dim(singles[0].shape, both.shape, 2)
            dims = stacking.observer_dims(single_shapes, stacked_shapes, 2)
        except Exception as error:  # noqa: BLE001 (any failure means: not stackable)
            return f"a stacked probe forward failed ({type(error).__name__}: {error})"
        tol = 1e-9 if self.dtype == torch.float64 else 1e-3
        for k, single in enumerate(singles):
            if out_dim is None or not torch.allclose(
                stacking.select(both, out_dim, 2, k), single, rtol=tol, atol=tol
            ):
                return "a stacked probe forward differs from per-point forwards"
        return out_dim, dims

    def _recompute_bn(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        with cumulative_batchnorm(self.model) as layers:
            for name in layers:
                tensors[f"{name}.running_mean"] = torch.zeros_like(tensors[f"{name}.running_mean"])
                tensors[f"{name}.running_var"] = torch.ones_like(tensors[f"{name}.running_var"])
                tensors[f"{name}.num_batches_tracked"] = torch.zeros_like(
                    tensors[f"{name}.num_batches_tracked"]
                )
            for x in self._bn_batches:
                self._reset()
                functional_call(self.model, tensors, (x,))
        return {k: v for name in layers for k, v in tensors.items() if k.startswith(f"{name}.")}

    def _plan_for(self, observed: dict | None, num_points: int) -> tuple | None:
        """The stacking plan for this call, or None for one point per forward."""
        if self.points_per_forward == 1 or num_points == 1 or self.dim == 0:
            return None
        if self._plan is None:
            self._plan = self._probe_stacking(observed)
            self.stacking = (
                f"up to {self.points_per_forward} points per forward"
                if isinstance(self._plan, tuple)
                else f"one point per forward: {self._plan}"
            )
        return self._plan if isinstance(self._plan, tuple) else None

    def evaluate(self, coords: Tensor) -> dict[str, Tensor]:
        """Metrics at ``K`` points in one pass over the batches.

        Args:
            coords: ``[K, D]`` grid coordinates.

        Returns:
            name -> ``[K]`` float64: each ``metrics_fn`` sum divided by the number of samples; with
            an observer also ``firing_rate`` and ``rate/<layer>``.
        """
        points = [[float(c) for c in row] for row in torch.as_tensor(coords).reshape(-1, self.dim)]
        sums = [defaultdict(float) for _ in points]
        spikes = [defaultdict(lambda: [0.0, 0.0]) for _ in points]
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(eval_mode(self.model))
            before = stacking.hook_keys(self.model)
            counts = stack.enter_context(self.observer(self.model)) if self.observer else {}
            plan = self._plan_for(stacking.added_hooks(self.model, before), len(points))
            buffers = [{}] * len(points)
            if self.bn_mode == "recompute":
                buffers = [self._recompute_bn(self.point(c)) for c in points]
            size = self.points_per_forward if plan else 1
            for x, y in self._batches:
                cache = self._cache(x, len(y))
                for start in range(0, len(points), size):
                    group = slice(start, start + size)
                    args = (points[group], buffers[group], x, y, cache, counts)
                    if plan:
                        self._stacked_batch(*args, sums[group], spikes[group], plan)
                    else:
                        self._point_batch(*args, sums[start], spikes[start])
        return self._means(sums, spikes)

    def _point_batch(self, points, buffers, x, y, cache, counts, total, rates) -> None:
        """One point on one batch: adds to ``total`` and ``rates``."""
        (coords,), (extra,) = points, buffers
        before = {name: tuple(value) for name, value in counts.items()}
        outputs = self._forward({**self.point(coords), **extra}, x, cache, coords)
        for name, value in self.metrics_fn(outputs, y).items():
            total[name] += float(value)
        for name, (count, size) in counts.items():
            rates[name][0] += count - before[name][0]
            rates[name][1] += size - before[name][1]

    def _stacked_batch(self, points, buffers, x, y, cache, counts, sums, rates, plan) -> None:
        """``K`` points on one batch in one forward: adds to ``sums[k]`` and ``rates[k]``."""
        out_dim, dims = plan
        K = len(points)
        tensors = [{**self.point(c), **extra} for c, extra in zip(points, buffers)]
        hooks = {m: dict(m._forward_hooks) for m in dims}
        with stacking.relayed_observer(hooks, dims, K, counts, rates):
            outputs = self._stacked_forward(tensors, x, cache, points)
        for k, total in enumerate(sums):
            output = stacking.select(outputs, out_dim, K, k).contiguous()
            for name, value in self.metrics_fn(output, y).items():
                total[name] += float(value)

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

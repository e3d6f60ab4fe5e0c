"""Many grid points per forward: per-point parameters stacked along the channel dimension.

``K`` parameter points of one model run as one model whose every parametrized layer is ``K``
copies side by side: a convolution becomes a grouped convolution with ``K`` times the groups, a
``Linear`` a batched matmul over ``K`` blocks of features, a ``BatchNorm`` one over ``K`` times the
channels. Activations carry the points as ``K`` consecutive blocks of channels (``[N, K*C, ...]``,
features last for ``Linear``), which every per-sample, per-channel layer (pools, spiking neurons,
elementwise ops, ``Flatten``) passes through unchanged, so the model's own fast paths (static
stems, fused neurons, channels-last) keep working. An input that carries no points (the data
before the first parametrized layer) is shared by all ``K`` blocks.

This applies when every parameter and buffer belongs to a layer of an exact type in
``STACKABLE`` (conv with zero padding); :func:`unstackable` says why not otherwise. Whether the
model's own code keeps the blocks apart (no op mixing channels, e.g. ``torch.cat`` or a softmax
over features) cannot be read from its modules, so the evaluator compares a stacked probe forward
with per-point forwards before it relies on it, and falls back to one point per forward.

An ``observer`` (forward hooks counting, e.g., spikes) must see one point at a time: its hooks are
suspended during a stacked forward and a relay hook calls them once per point on that point's
slice of the module's inputs and output (:func:`relayed_observer`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["STACKABLE", "unstackable", "stack_tensors", "stacked_layers", "stacked_dim", "select"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
STACKABLE = (nn.Linear, *_CONVS, *_NORMS)
"""Layer types (exact) whose parameters and buffers can differ between the stacked points."""
_TENSORS = ("weight", "bias", "running_mean", "running_var")


@contextmanager
def replaced_forward(module: nn.Module, function: Callable) -> Iterator[None]:
    """``module.forward`` is ``function`` inside the block; restored after."""
    previous = module.__dict__.get("forward")
    module.forward = function
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous


def unstackable(model: nn.Module, names: Sequence[str]) -> str | None:
    """Why the tensors ``names`` (parameters and buffers) cannot be stacked, or None if they can."""
    modules = dict(model.named_modules())
    for name in names:
        owner, _, attribute = name.rpartition(".")
        module = modules.get(owner)
        if type(module) not in STACKABLE:
            return f"{name!r} belongs to a {type(module).__name__}, not one of the stackable layers"
        if attribute not in (*_TENSORS, "num_batches_tracked"):
            return f"{name!r} is not a weight, bias or running statistic"
        if type(module) in _CONVS and module.padding_mode != "zeros":
            return f"{owner!r} pads with {module.padding_mode!r}"
    return None


def stack_tensors(points: Sequence[Mapping[str, Tensor]], names: Sequence[str]) -> dict:
    """name -> ``[K, ...]``: the tensors of ``K`` points, stacked (floating tensors only)."""
    return {
        n: torch.stack([p[n] for p in points]) for n in names if points[0][n].is_floating_point()
    }


def _linear(module: nn.Linear, weight: Tensor, bias: Tensor | None) -> Callable:
    K, _, features = weight.shape
    shared_weight = weight.flatten(0, 1)  # [K*O, F]: one matmul when the input is shared

    def forward(x: Tensor) -> Tensor:
        if x.shape[-1] == features:  # shared input: all K output blocks at once
            return F.linear(x, shared_weight, None if bias is None else bias.flatten())
        blocks = x.unflatten(-1, (K, features))  # [..., K, F]
        lead = blocks.shape[:-2]
        blocks = blocks.reshape(-1, K, features).transpose(0, 1)  # [K, N, F]
        if bias is None:
            y = torch.bmm(blocks, weight.transpose(1, 2))
        else:
            y = torch.baddbmm(bias.unsqueeze(1), blocks, weight.transpose(1, 2))
        return y.transpose(0, 1).reshape(*lead, -1)  # [..., K*O]

    return forward


def _conv(module: nn.Module, weight: Tensor, bias: Tensor | None, channels_last: bool) -> Callable:
    K, conv = weight.shape[0], (F.conv1d, F.conv2d, F.conv3d)[weight.ndim - 4]
    flat = weight.flatten(0, 1)
    if channels_last and flat.ndim == 4:
        flat = flat.contiguous(memory_format=torch.channels_last)
    flat_bias = None if bias is None else bias.flatten()

    def forward(x: Tensor) -> Tensor:
        groups = module.groups
        if x.shape[1] == module.in_channels and groups > 1:  # shared input, grouped conv
            x = torch.cat([x] * K, dim=1)
        if x.shape[1] == K * module.in_channels:
            groups *= K
        return conv(x, flat, flat_bias, module.stride, module.padding, module.dilation, groups)

    return forward


def _norm(module: nn.Module, tensors: Mapping[str, Tensor | None], K: int) -> Callable:
    flat = {k: None if t is None else t.flatten() for k, t in tensors.items()}

    def forward(x: Tensor) -> Tensor:
        if x.shape[1] == module.num_features:  # shared input
            x = torch.cat([x] * K, dim=1)
        batch_stats = module.training or flat["running_mean"] is None
        return F.batch_norm(
            x,
            flat["running_mean"],
            flat["running_var"],
            flat["weight"],
            flat["bias"],
            batch_stats,
            0.0,
            module.eps,
        )

    return forward


@contextmanager
def stacked_layers(
    model: nn.Module, stacked: Mapping[str, Tensor], channels_last: bool = False
) -> Iterator[None]:
    """Inside the block every stackable layer of ``model`` runs the ``K`` points of ``stacked``.

    Args:
        model: The model (only ``forward`` attributes of its layers are set, and restored).
        stacked: name -> ``[K, ...]`` for every floating parameter and buffer (see
            :func:`stack_tensors`).
        channels_last: Store stacked 4-D conv weights channels-last.
    """
    K = next(iter(stacked.values())).shape[0]
    with ExitStack() as stack:
        for name, module in model.named_modules():
            if type(module) not in STACKABLE:
                continue
            tensors = {k: stacked.get(f"{name}.{k}" if name else k) for k in _TENSORS}
            if type(module) is nn.Linear:
                forward = _linear(module, tensors["weight"], tensors["bias"])
            elif type(module) in _CONVS:
                forward = _conv(module, tensors["weight"], tensors["bias"], channels_last)
            else:
                forward = _norm(module, tensors, K)
            stack.enter_context(replaced_forward(module, forward))
        yield


def stacked_dim(single: Sequence[int], stacked: Sequence[int], K: int) -> int | None:
    """The dimension holding ``K`` blocks: where ``stacked`` is ``K`` times ``single``.

    Returns:
        None for equal shapes (a tensor shared by all points).

    Raises:
        ValueError: If the shapes differ in any other way.
    """
    if tuple(single) == tuple(stacked):
        return None
    differ = [i for i, (a, b) in enumerate(zip(single, stacked)) if a != b]
    if (
        len(single) != len(stacked)
        or len(differ) != 1
        or stacked[differ[0]] != K * single[differ[0]]
    ):
        raise ValueError(f"shape {tuple(stacked)} is not {K} blocks of {tuple(single)}")
    return differ[0]


def select(tensor: Tensor, dim: int | None, K: int, k: int) -> Tensor:
    """Point ``k``'s block of a stacked tensor (``dim`` None: shared, returned as is)."""
    return tensor if dim is None else tensor.unflatten(dim, (K, -1)).select(dim, k)


@contextmanager
def suspended_hooks(hooks: Mapping[nn.Module, Mapping[int, Callable]]) -> Iterator[None]:
    """Remove the given forward hooks from their modules inside the block; restored after."""
    saved = {module: OrderedDict(module._forward_hooks) for module in hooks}
    for module, own in hooks.items():
        for key in own:
            del module._forward_hooks[key]
    try:
        yield
    finally:
        for module, previous in saved.items():
            module._forward_hooks.clear()
            module._forward_hooks.update(previous)


@contextmanager
def recorded_shapes(modules: Sequence[nn.Module], shapes: dict) -> Iterator[None]:
    """Record ``(input shapes, output shape)`` of each module's first call into ``shapes``."""

    def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if module not in shapes:
            shapes[module] = (
                [t.shape if isinstance(t, Tensor) else None for t in inputs],
                output.shape,
            )

    handles = [module.register_forward_hook(record) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def observer_dims(single: Mapping, stacked: Mapping, K: int) -> dict:
    """module -> (input dims, output dim) holding the blocks, from :func:`recorded_shapes`."""
    dims = {}
    for module, (inputs, output) in stacked.items():
        pairs = zip(single[module][0], inputs)
        in_dims = [None if a is None else stacked_dim(a, b, K) for a, b in pairs]
        dims[module] = (in_dims, stacked_dim(single[module][1], output, K))
    return dims


@contextmanager
def relayed_observer(
    hooks: Mapping[nn.Module, Mapping[int, Callable]],
    dims: Mapping[nn.Module, tuple],
    K: int,
    counts: Mapping[str, list[float]],
    rates: Sequence[dict],
) -> Iterator[None]:
    """Run an observer's forward hooks once per point on that point's block.

    Args:
        hooks: module -> {key: hook}, the observer's plain forward hooks (suspended in the block).
        dims: module -> (input dims, output dim) from :func:`observer_dims`.
        K: Points per forward.
        counts: The observer's ``{layer: [count, total]}``.
        rates: ``K`` dicts ``{layer: [count, total]}`` that receive each point's increments.
    """

    def relay(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        in_dims, out_dim = dims[module]
        for k in range(K):
            before = {name: tuple(value) for name, value in counts.items()}
            args = tuple(
                select(t, d, K, k) if isinstance(t, Tensor) else t for t, d in zip(inputs, in_dims)
            )
            for hook in hooks[module].values():
                if hook(module, args, select(output, out_dim, K, k)) is not None:
                    raise RuntimeError(
                        "an observer's forward hook returned a value; it may only observe"
                    )
            for name, (count, size) in counts.items():
                rates[k][name][0] += count - before[name][0]
                rates[k][name][1] += size - before[name][1]

    with suspended_hooks(hooks):
        handles = [module.register_forward_hook(relay) for module in hooks if module in dims]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def hook_keys(model: nn.Module) -> dict[nn.Module, tuple[set, int]]:
    """module -> (keys of its forward hooks, number of its other hooks)."""
    return {
        m: (set(m._forward_hooks), len(m._forward_pre_hooks) + len(m._forward_hooks_with_kwargs))
        for m in model.modules()
    }


def added_hooks(model: nn.Module, before: Mapping) -> dict | None:
    """module -> {key: hook} of the plain forward hooks added since ``before`` (:func:`hook_keys`).

    Returns:
        None if other kinds of hooks were added, or if hooks were already there before.
    """
    added = {}
    for module, (keys, others) in hook_keys(model).items():
        if others != before[module][1] or before[module][0] or others:
            return None
        new = {key: module._forward_hooks[key] for key in keys - before[module][0]}
        if new:
            added[module] = new
    return added

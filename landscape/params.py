"""Parameter dictionaries as flat vectors: flatten, unflatten, and named parameter subsets.

Every estimator in the engine works on a flat parameter vector ``theta`` of length ``P`` (the
concatenation of the selected parameters in ``named_parameters()`` order). These helpers are the
only place that knows how a vector maps back to named tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "flatten",
    "unflatten",
    "select_parameters",
    "parameter_groups",
]


def flatten(tensors: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector.

    Args:
        tensors: A name -> tensor mapping (in insertion order) or a sequence of tensors.

    Returns:
        Vector ``[P]`` with ``P`` the total number of elements.

    Raises:
        ValueError: If there are no tensors.

    Example:
        >>> flatten({"a": torch.ones(2, 2), "b": torch.zeros(3)}).shape
        torch.Size([7])
    """
    values = list(tensors.values()) if isinstance(tensors, Mapping) else list(tensors)
    if not values:
        raise ValueError("flatten needs at least one tensor, got none")
    return torch.cat([value.reshape(-1) for value in values])


def unflatten(vector: Tensor, shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """Split a flat vector into named tensors (views of ``vector``).

    Args:
        vector: Vector ``[P]``.
        shapes: name -> shape, in the order used by :func:`flatten`.

    Returns:
        name -> tensor of the given shape.

    Raises:
        ValueError: If ``vector`` is not 1-D or its length does not match the shapes.

    Example:
        >>> parts = unflatten(torch.arange(7.0), {"a": torch.Size([2, 2]), "b": torch.Size([3])})
        >>> parts["b"].tolist()
        [4.0, 5.0, 6.0]
    """
    sizes = [torch.Size(shape).numel() for shape in shapes.values()]
    if vector.ndim != 1 or vector.numel() != sum(sizes):
        raise ValueError(
            f"vector must have shape [{sum(sizes)}] to match the parameters, "
            f"got {tuple(vector.shape)}"
        )
    pieces = torch.split(vector, sizes)
    return {name: piece.view(shape) for (name, shape), piece in zip(shapes.items(), pieces)}


def parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """Group trainable parameter names by the module that owns them (one group per layer).

    Args:
        model: Any module.

    Returns:
        module name -> names of its own parameters that require grad, in model order.
        The root module's own parameters are grouped under ``""``.

    Example:
        >>> groups = parameter_groups(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
        >>> groups["0"]
        ['0.weight', '0.bias']
    """
    groups: dict[str, list[str]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            groups.setdefault(owner, []).append(name)
    return groups


def select_parameters(
    model: nn.Module,
    prefixes: Iterable[str] | None = None,
    layers: Iterable[str] | None = None,
) -> list[str]:
    """Names of the trainable parameters in a subset, in ``named_parameters()`` order.

    Args:
        model: Any module.
        prefixes: Keep parameters whose name starts with one of these (``"features."``);
            ``None`` keeps all.
        layers: Keep parameters owned by these modules (keys of :func:`parameter_groups`);
            ``None`` keeps all.

    Returns:
        The selected parameter names.

    Raises:
        ValueError: If a layer is unknown or the selection is empty.
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if prefixes is not None:
        prefixes = tuple(prefixes)
        names = [name for name in names if name.startswith(prefixes)]
    if layers is not None:
        groups = parameter_groups(model)
        unknown = sorted(set(layers) - set(groups))
        if unknown:
            raise ValueError(f"unknown layer(s) {unknown}; layers with parameters: {list(groups)}")
        owned = {name for layer in layers for name in groups[layer]}
        names = [name for name in names if name in owned]
    if not names:
        raise ValueError(
            f"the parameter selection (prefixes={prefixes}, layers={layers}) is empty; "
            f"trainable parameters: {[n for n, p in model.named_parameters() if p.requires_grad]}"
        )
    return names

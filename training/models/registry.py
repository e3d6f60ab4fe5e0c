"""Model registry: ``register`` (a decorator), ``build(name, **options)``, ``names()``.

The registry imports no model file; each model family registers its factories with ``@register``,
and the package ``training.models`` imports every family, so ``training.models.build`` always
sees a full registry.

Every registered model takes the neuron options ``NEURON_OPTIONS`` (the ``LIF`` settings shared by
all of its neurons). A factory declares them as one ``neuron`` parameter; ``build`` collects the
flat options into that dict, so they and their defaults are written down once, here.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

__all__ = ["NEURON_OPTIONS", "register", "build", "names", "model_options"]

NEURON_OPTIONS: dict[str, Any] = {
    "tau": 0.5,
    "v_threshold": 1.0,
    "surrogate": "triangle",
    "alpha": None,
}
"""The ``LIF`` options every model takes, with their defaults (TET: tau 0.5, V_th 1, triangle).

``alpha`` None means the surrogate's default width or slope (``training.snn.neurons.SURROGATES``).
"""

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Decorator adding a model factory to the registry under ``name``.

    The factory takes its model options as keywords and the neuron options as one ``neuron``
    dict of ``LIF`` keyword arguments (always given by ``build``).

    Raises:
        ValueError: If ``name`` is taken or the factory has no ``neuron`` parameter.
    """

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        if "neuron" not in inspect.signature(factory).parameters:
            raise ValueError(f"model factory {name!r} must take a 'neuron' parameter")
        _REGISTRY[name] = factory
        return factory

    return decorator


def names() -> list[str]:
    """Sorted names of all registered models."""
    return sorted(_REGISTRY)


def _factory(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return _REGISTRY[name]


def model_options(name: str) -> list[str]:
    """Keyword options accepted by ``build(name, ...)``: the model's own, then the neuron ones."""
    own = [key for key in inspect.signature(_factory(name)).parameters if key != "neuron"]
    return own + list(NEURON_OPTIONS)


def build(name: str, **options) -> nn.Module:
    """Build a registered model; options that are ``None`` are dropped (use the default).

    Raises:
        ValueError: On an unknown model name or an option the model does not take.
    """
    factory = _factory(name)
    options = {key: value for key, value in options.items() if value is not None}
    unknown = set(options) - set(model_options(name))
    if unknown:
        raise ValueError(
            f"model {name!r} does not take option(s) {sorted(unknown)}; "
            f"it takes {model_options(name)}"
        )
    neuron = {key: options.pop(key, default) for key, default in NEURON_OPTIONS.items()}
    return factory(**options, neuron=neuron)

"""Model registry: ``build(name, **options)`` and ``names()``.

Every model is time-major and returns ``O`` as ``[T, B, num_classes]`` with no neuron on the output
layer; the prediction is ``argmax(mean_t O(t))``. Options left at ``None`` take the model's default.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import Tensor, nn

from training.layers import SeqToANN, SpikingModel, conv_bn, neuron_options

__all__ = ["register", "build", "names", "model_options", "SpikingCNN", "SpikingMLP"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Decorator adding a model factory to the registry under ``name``."""

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
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
    """Keyword options accepted by a registered model factory."""
    return list(inspect.signature(_factory(name)).parameters)


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
    return factory(**options)


class SpikingCNN(SpikingModel):
    """Small spiking CNN: ``[conv3x3 -> BN -> LIF -> AvgPool2] * len(channels) -> Linear``.

    The default digits model (8x8 inputs, channels (16, 32)) has 6,138 parameters.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: tuple[int, ...],
        T: int,
        neuron: dict | None = None,
    ) -> None:
        super().__init__(T, neuron)
        blocks, size = [], image_size
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels):
            blocks += [conv_bn(c_in, c_out), self.lif(), SeqToANN(nn.AvgPool2d(2))]
            size //= 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} poolings")
        self.features = nn.Sequential(*blocks)
        self.classifier = SeqToANN(nn.Flatten(), nn.Linear(channels[-1] * size * size, num_classes))

    def forward_sequence(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))  # [T, B, num_classes]


class SpikingMLP(SpikingModel):
    """Spiking MLP ``Flatten -> [Linear -> LIF] * len(hidden) -> Linear``; tiny, for tests."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: tuple[int, ...],
        T: int,
        neuron: dict | None = None,
    ) -> None:
        super().__init__(T, neuron)
        layers: list[nn.Module] = [SeqToANN(nn.Flatten())]
        for f_in, f_out in zip((in_features, *hidden[:-1]), hidden):
            layers += [SeqToANN(nn.Linear(f_in, f_out)), self.lif()]
        layers.append(SeqToANN(nn.Linear(hidden[-1] if hidden else in_features, num_classes)))
        self.layers = nn.Sequential(*layers)

    def forward_sequence(self, x: Tensor) -> Tensor:
        return self.layers(x)


@register("digits_snn")
def digits_snn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    channels: tuple[int, ...] = (16, 32),
    T: int = 4,
    tau: float = 0.5,
    v_threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float | None = None,
) -> SpikingCNN:
    """The offline default: a two-block spiking CNN for 8x8 digits (or upsampled digits)."""
    neuron = neuron_options(tau, v_threshold, surrogate, alpha)
    return SpikingCNN(in_channels, num_classes, image_size, tuple(channels), T, neuron)


@register("spiking_mlp")
def spiking_mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    hidden: tuple[int, ...] = (32,),
    T: int = 4,
    tau: float = 0.5,
    v_threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float | None = None,
) -> SpikingMLP:
    """A spiking MLP on flattened images; small enough for dense Hessians in tests."""
    neuron = neuron_options(tau, v_threshold, surrogate, alpha)
    in_features = in_channels * image_size * image_size
    return SpikingMLP(in_features, num_classes, tuple(hidden), T, neuron)


from training import conv1d, resnet, vgg  # noqa: E402,F401  registers the paper models

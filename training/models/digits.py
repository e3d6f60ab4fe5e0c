"""The small models of the offline default: a spiking CNN and a spiking MLP for 8x8 digits."""

from __future__ import annotations

from torch import Tensor, nn

from training.models.layers import SeqToANN, SpikingModel, conv_bn
from training.models.registry import register

__all__ = ["SpikingCNN", "SpikingMLP", "digits_snn", "spiking_mlp"]


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
    neuron: dict | None = None,
) -> SpikingCNN:
    """The offline default: a two-block spiking CNN for 8x8 digits (or upsampled digits)."""
    return SpikingCNN(in_channels, num_classes, image_size, tuple(channels), T, neuron)


@register("spiking_mlp")
def spiking_mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 8,
    hidden: tuple[int, ...] = (32,),
    T: int = 4,
    neuron: dict | None = None,
) -> SpikingMLP:
    """A spiking MLP on flattened images; small enough for dense Hessians in tests."""
    in_features = in_channels * image_size * image_size
    return SpikingMLP(in_features, num_classes, tuple(hidden), T, neuron)

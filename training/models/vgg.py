"""VGGSNN of the TET paper for CIFAR10-DVS (48x48 event frames, 2 polarity channels).

Deng et al. (2022), Sec. 5.1, and the official ``models/VGG_models.py``:

- ``vggsnn``: ``64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2-FC``. Each ``C3`` is
  conv3x3 (bias=True) + BN + LIF; ``AP2`` is ``AvgPool2d(2)`` with no LIF after it, so averaged
  spikes enter the next conv as real values. The classifier is one ``Linear(512*3*3 -> classes)``
  applied per time step. 9,271,498 parameters at 10 classes.
- ``vggsnn_woap`` (official ``VGGSNNwoAP``): the same channels with stride-2 convs in the 2nd, 4th,
  6th and 8th layers instead of pooling; the same 9,271,498 parameters (strides and pooling add
  none). The 2022 training script used this variant, the 2024 one ``VGGSNN``.

Convs get kaiming-normal (fan_out, relu) init as in the official code; BN and Linear keep the
PyTorch defaults. Time-major: ``[T, B, 2, H, W]`` in, ``[T, B, classes]`` out.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.models.layers import SeqToANN, SpikingModel, conv_bn, scaled_channels
from training.models.registry import register

__all__ = ["VGGSNN", "vggsnn", "vggsnn_woap", "VGG_CHANNELS"]

VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)
"""Output channels of the eight conv layers; every 2nd layer is followed by a downsampling."""


class VGGSNN(SpikingModel):
    """TET VGGSNN (``use_pooling=True``) or VGGSNNwoAP (``use_pooling=False``).

    Args:
        num_classes: Output classes.
        in_channels: Input channels (2 polarities for DVS).
        image_size: Input height = width; must be divisible by 16 (four 2x downsamplings).
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF``.
        width: Channel multiplier (1.0: the paper model).
        use_pooling: AvgPool2d(2) after layers 2, 4, 6, 8; otherwise those convs have stride 2.

    Raises:
        ValueError: If ``image_size`` is not a positive multiple of 16.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 2,
        image_size: int = 48,
        T: int = 10,
        neuron: dict | None = None,
        width: float = 1.0,
        use_pooling: bool = True,
    ) -> None:
        super().__init__(T, neuron)
        if image_size < 16 or image_size % 16:
            raise ValueError(f"image_size must be a positive multiple of 16, got {image_size}")
        channels = [scaled_channels(c, width) for c in VGG_CHANNELS]
        layers: list[nn.Module] = []
        for index, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels)):
            is_downsampling = index % 2 == 1
            stride = 2 if is_downsampling and not use_pooling else 1
            layers.append(nn.Sequential(conv_bn(c_in, c_out, stride, bias=True), self.lif()))
            if is_downsampling and use_pooling:
                layers.append(SeqToANN(nn.AvgPool2d(2)))
        self.features = nn.Sequential(*layers)
        side = image_size // 16
        self.classifier = SeqToANN(nn.Linear(channels[-1] * side * side, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C, H, W]``. Returns: ``[T, B, num_classes]`` (no LIF on the output)."""
        x = self.features(x)  # [T, B, 512w, H/16, W/16]
        return self.classifier(x.flatten(2))  # [T, B, num_classes]


@register("vggsnn")
def vggsnn(
    num_classes: int = 10,
    in_channels: int = 2,
    image_size: int = 48,
    T: int = 10,
    width: float = 1.0,
    neuron: dict | None = None,
) -> VGGSNN:
    """TET VGGSNN with average pooling (CIFAR10-DVS, T=10). 9,271,498 parameters at 10 classes."""
    return VGGSNN(num_classes, in_channels, image_size, T, neuron, width, use_pooling=True)


@register("vggsnn_woap")
def vggsnn_woap(
    num_classes: int = 10,
    in_channels: int = 2,
    image_size: int = 48,
    T: int = 10,
    width: float = 1.0,
    neuron: dict | None = None,
) -> VGGSNN:
    """Official ``VGGSNNwoAP``: stride-2 convs instead of pooling. 9,271,498 parameters."""
    return VGGSNN(num_classes, in_channels, image_size, T, neuron, width, use_pooling=False)

"""Spiking ResNets of the TET paper: ResNet-19 (CIFAR) and Spiking-/SEW-ResNet-34 (ImageNet).

Deng et al. (2022), Sec. 5, and the official ``models/resnet_models.py``:

- ``resnet19``: stem conv3x3(3->64) + BN + LIF, stages of spiking BasicBlocks ``[3, 3, 2]`` at
  128/256/512 channels (strides 1, 2, 2), then AvgPool -> Linear(512->256) -> LIF ->
  Linear(256->classes). 12,630,858 parameters at 10 classes, PyTorch default initialization.
- ``spiking_resnet34`` / ``sew_resnet34``: the torchvision ResNet-34 layout (stem conv7x7 s2 + BN +
  LIF + MaxPool, stages ``[3, 4, 6, 3]`` at 64..512, AvgPool, Linear), 21,797,672 parameters at
  1000 classes. The spiking block adds the residual *before* its last LIF; the SEW block
  (Fang et al., 2021, ADD connection) adds the spikes of the block to the identity spikes
  (``LIF(BN(conv(x)))`` on a downsampled identity). The official repo does not ship these models;
  the authors used LIF with hard reset instead of IF for SEW-ResNet-34 (TET issue #1), which is
  what ``training.snn.neurons.LIF`` is. Initialization as torchvision/SpikingJelly: kaiming-normal
  (fan_out, relu) on convs.

All models are time-major: ``forward_sequence`` maps ``[T, B, C, H, W]`` to ``[T, B, classes]``.
``width`` scales every hidden channel count (``round(c * width)``, at least 1); ``width=1`` is the
paper model, smaller widths are for CPU tests and benchmarks.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from training.models.layers import SeqToANN, SpikingModel, conv_bn, scaled_channels
from training.models.registry import register
from training.snn.neurons import LIF

__all__ = [
    "BasicBlock",
    "ResNet19",
    "ImageNetResNet",
    "resnet19",
    "spiking_resnet34",
    "sew_resnet34",
]


class BasicBlock(nn.Module):
    """Spiking BasicBlock: ``conv3x3 -> BN -> LIF -> conv3x3 -> BN``, plus the identity.

    Spiking (``is_sew=False``, TET ResNet-19, Spiking-ResNet): ``LIF(BN(conv(...)) + identity)``.
    SEW ADD (``is_sew=True``): ``LIF(BN(conv(...))) + identity`` where a downsampled identity is
    ``LIF(BN(conv1x1(x)))``, so the output is a sum of spikes (values in {0, 1, 2}).
    The identity is ``BN(conv1x1(x))`` whenever the stride or the channel count changes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first conv and of the downsampling conv.
        make_lif: Returns a new ``LIF`` layer (the model's neuron settings).
        is_sew: Use the SEW ADD connection.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        make_lif: Callable[[], LIF],
        is_sew: bool = False,
    ) -> None:
        super().__init__()
        self.is_sew = is_sew
        self.conv1 = conv_bn(in_channels, out_channels, stride)
        self.lif1 = make_lif()
        self.conv2 = conv_bn(out_channels, out_channels)
        self.lif2 = make_lif()
        self.downsample = None
        self.downsample_lif = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = conv_bn(in_channels, out_channels, stride, kernel_size=1)
            if is_sew:
                self.downsample_lif = make_lif()

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C_in, H, W]``. Returns: ``[T, B, C_out, H / stride, W / stride]``."""
        out = self.conv2(self.lif1(self.conv1(x)))
        identity = x if self.downsample is None else self.downsample(x)
        if not self.is_sew:
            return self.lif2(out + identity)
        if self.downsample_lif is not None:
            identity = self.downsample_lif(identity)
        return self.lif2(out) + identity


def _stage(
    make_lif: Callable[[], LIF],
    in_channels: int,
    out_channels: int,
    num_blocks: int,
    stride: int,
    is_sew: bool = False,
) -> nn.Sequential:
    """``num_blocks`` BasicBlocks; the first one changes stride and channels."""
    blocks = [BasicBlock(in_channels, out_channels, stride, make_lif, is_sew)]
    blocks += [
        BasicBlock(out_channels, out_channels, 1, make_lif, is_sew) for _ in range(num_blocks - 1)
    ]
    return nn.Sequential(*blocks)


class ResNet19(SpikingModel):
    """TET ResNet-19 for 32x32 images (official ``resnet19``), time-major.

    Args:
        num_classes: Output classes.
        in_channels: Image channels.
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF``.
        width: Channel multiplier (1.0: the paper model).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        T: int = 4,
        neuron: dict | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__(T, neuron)
        c0, c1, c2, c3, hidden = (scaled_channels(c, width) for c in (64, 128, 256, 512, 256))
        self.stem = conv_bn(in_channels, c0)
        self.stem_lif = self.lif()
        self.layer1 = _stage(self.lif, c0, c1, 3, stride=1)
        self.layer2 = _stage(self.lif, c1, c2, 3, stride=2)
        self.layer3 = _stage(self.lif, c2, c3, 2, stride=2)
        self.pool = SeqToANN(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc1 = SeqToANN(nn.Linear(c3, hidden))
        self.fc1_lif = self.lif()
        self.fc2 = SeqToANN(nn.Linear(hidden, num_classes))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C, H, W]``. Returns: ``[T, B, num_classes]`` (no LIF on the output)."""
        x = self.stem_lif(self.stem(x))  # [T, B, 64w, H, W]
        x = self.layer3(self.layer2(self.layer1(x)))  # [T, B, 512w, H/4, W/4]
        x = self.fc1_lif(self.fc1(self.pool(x)))  # [T, B, 256w]
        return self.fc2(x)


class ImageNetResNet(SpikingModel):
    """Spiking or SEW ResNet in the torchvision ImageNet layout (BasicBlocks), time-major.

    Args:
        layers: Blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-34.
        num_classes: Output classes.
        in_channels: Image channels.
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF``.
        width: Channel multiplier (1.0: the paper model).
        is_sew: SEW ADD blocks instead of spiking blocks.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_channels: int = 3,
        T: int = 4,
        neuron: dict | None = None,
        width: float = 1.0,
        is_sew: bool = False,
    ) -> None:
        super().__init__(T, neuron)
        channels = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        self.stem = conv_bn(in_channels, channels[0], stride=2, kernel_size=7)
        self.stem_lif = self.lif()
        self.maxpool = SeqToANN(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        stages = [
            _stage(self.lif, c_in, c_out, num_blocks, stride, is_sew)
            for c_in, c_out, num_blocks, stride in zip(
                (channels[0], *channels[:-1]), channels, layers, (1, 2, 2, 2)
            )
        ]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = SeqToANN(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = SeqToANN(nn.Linear(channels[-1], num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C, H, W]``. Returns: ``[T, B, num_classes]``."""
        x = self.maxpool(self.stem_lif(self.stem(x)))  # [T, B, 64w, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [T, B, 512w, H/32, W/32]
        return self.fc(self.pool(x))


@register("resnet19")
def resnet19(
    num_classes: int = 10,
    in_channels: int = 3,
    T: int = 4,
    width: float = 1.0,
    neuron: dict | None = None,
) -> ResNet19:
    """TET ResNet-19 (CIFAR-10/100; paper T in {2, 4, 6}). 12,630,858 parameters at 10 classes."""
    return ResNet19(num_classes, in_channels, T, neuron, width)


@register("spiking_resnet34")
def spiking_resnet34(
    num_classes: int = 1000,
    in_channels: int = 3,
    T: int = 6,
    width: float = 1.0,
    neuron: dict | None = None,
) -> ImageNetResNet:
    """Spiking-ResNet-34 with LIF (ImageNet; T=6 in the paper, unverified). 21,797,672 params."""
    return ImageNetResNet((3, 4, 6, 3), num_classes, in_channels, T, neuron, width, is_sew=False)


@register("sew_resnet34")
def sew_resnet34(
    num_classes: int = 1000,
    in_channels: int = 3,
    T: int = 4,
    width: float = 1.0,
    neuron: dict | None = None,
) -> ImageNetResNet:
    """SEW-ResNet-34 (ADD) with LIF + hard reset (ImageNet; T=4 in the paper). 21,797,672 params."""
    return ImageNetResNet((3, 4, 6, 3), num_classes, in_channels, T, neuron, width, is_sew=True)

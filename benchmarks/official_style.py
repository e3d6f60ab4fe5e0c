"""The official TET code's LIF, ResNet-19, VGGSNN and TET loss, written the way it writes them.

The one official-style reference of the toolkit: the baseline of the speed benchmark
(``benchmarks/train_throughput.py``) and the independent forward reference of the state-dict
conversion test (``tests/training/test_official.py``). Re-created from the facts in
``reference/tet_reference.md`` (sections 1.2, 2, 3.1) about the official ``models/layers.py``,
``models/resnet_models.py``, ``models/VGG_models.py`` and ``functions.py``
(github.com/Gus-Lab/temporal_efficient_training), not copied from it:

- batch-major ``[B, T, ...]`` tensors; static images are repeated with ``x.repeat(1, T, 1, 1, 1)``
  (``add_dimention``; the original also ``unsqueeze_``s its argument in place, which is left out);
- ``SeqToANNContainer`` merges ``[B, T]`` around *every* stateless layer (conv and BN separately,
  through ``tdLayer`` and ``tdBatchNorm``);
- ``LIFSpike``: a Python loop over ``x[:, t, ...]`` (tau 0.5, threshold 1, hard reset through the
  non-detached spike) and ``torch.stack(..., dim=1)``; ``ZIF`` is the triangle surrogate as an
  ``autograd.Function`` that keeps ``gama`` in a saved tensor and reads it back with ``.item()``;
- ``VGGSNN`` / ``VGGSNNwoAP``: ``Layer`` = ``SeqToANNContainer(conv3x3, BN)`` + ``LIFSpike``, one
  shared ``SeqToANNContainer(AvgPool2d(2))`` after every second layer (or stride-2 convs), a
  ``SeqToANNContainer(Linear)`` classifier; input already a ``[B, T, 2, H, W]`` sequence;
- ``TET_loss``: a loop of per-step cross-entropies on ``outputs[:, t]`` plus ``MSELoss`` against
  ``zeros_like(outputs).fill_(means)``.

Module names follow the official ones (``conv1_s``, ``bn1.seqbn``, ``downsample.layer.module``,
``fc1_s``...), so ``training.runs.official.convert_official_state_dict`` maps this model's state
dict onto ``training.models.build("resnet19")`` (VGG: ``"vggsnn"``, ``"vggsnn_woap"``) and both can
run on the same weights. The only change that affects values: ``ZIF`` returns spikes in the input
dtype (the original's ``.float()`` breaks float64 models), which is the same in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ZIF",
    "LIFSpike",
    "SeqToANNContainer",
    "TdBatchNorm",
    "TdLayer",
    "OfficialResNet19",
    "OfficialVGG",
    "tet_loss_official",
]


class ZIF(torch.autograd.Function):
    """Heaviside forward, triangle surrogate ``max(0, gama - |x|) / gama^2`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, gama: float) -> Tensor:
        out = (x > 0).to(x.dtype)
        ctx.save_for_backward(x, out, torch.tensor([gama]))
        return out

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, _, others = ctx.saved_tensors
        gama = others[0].item()
        grad_input = grad_output.clone()
        tmp = (1 / gama) * (1 / gama) * ((gama - x.abs()).clamp(min=0))
        return grad_input * tmp, None


class LIFSpike(nn.Module):
    """Official LIF: ``[B, T, ...]`` in and out, a loop over ``x[:, t]``, state reset per call."""

    def __init__(self, thresh: float = 1.0, tau: float = 0.5, gama: float = 1.0) -> None:
        super().__init__()
        self.thresh, self.tau, self.gama = thresh, tau, gama

    def forward(self, x: Tensor) -> Tensor:
        mem = 0
        spikes = []
        for t in range(x.shape[1]):
            mem = mem * self.tau + x[:, t, ...]
            spike = ZIF.apply(mem - self.thresh, self.gama)
            mem = (1 - spike) * mem
            spikes.append(spike)
        return torch.stack(spikes, dim=1)


class SeqToANNContainer(nn.Module):
    """Merge ``[B, T]`` into the batch, apply the module, split again (SpikingJelly 0.0.0.0.x)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.module = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        y = self.module(x.flatten(0, 1).contiguous())
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class TdBatchNorm(nn.Module):
    """``tdBatchNorm``: a BatchNorm2d over ``B*T``, registered as ``bn`` and ``seqbn.module``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.seqbn = SeqToANNContainer(self.bn)

    def forward(self, x: Tensor) -> Tensor:
        return self.seqbn(x)


class TdLayer(nn.Module):
    """``tdLayer``: a layer in its own ``SeqToANNContainer``, then an optional tdBatchNorm."""

    def __init__(self, layer: nn.Module, bn: nn.Module | None = None) -> None:
        super().__init__()
        self.layer = SeqToANNContainer(layer)
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer(x)
        return x if self.bn is None else self.bn(x)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> LIF -> conv3x3 -> BN, ``+= identity``, LIF (one shared ``LIFSpike``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = TdBatchNorm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = TdBatchNorm(c_out)
        self.downsample = downsample
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        self.conv2_s = TdLayer(self.conv2, self.bn2)
        self.spike = LIFSpike()

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.conv2_s(self.spike(self.conv1_s(x)))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.spike(out)


def _stage(c_in: int, c_out: int, num_blocks: int, stride: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or c_in != c_out:
        downsample = TdLayer(nn.Conv2d(c_in, c_out, 1, stride, bias=False), TdBatchNorm(c_out))
    blocks = [BasicBlock(c_in, c_out, stride, downsample)]
    blocks += [BasicBlock(c_out, c_out, 1, None) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class OfficialResNet19(nn.Module):
    """Official-style ResNet-19: static ``[B, C, H, W]`` in, ``[B, T, num_classes]`` out.

    Args:
        num_classes: Output classes.
        in_channels: Image channels.
        T: Time steps (the image is repeated ``T`` times).
        width: Channel multiplier, ``max(1, round(c * width))`` as in ``training.models.resnet``.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, T: int = 4, width: float = 1.0
    ) -> None:
        super().__init__()
        c0, c1, c2, c3, hidden = (max(1, round(c * width)) for c in (64, 128, 256, 512, 256))
        self.T = T
        self.conv1 = nn.Conv2d(in_channels, c0, 3, 1, 1, bias=False)
        self.bn1 = TdBatchNorm(c0)
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        self.layer1 = _stage(c0, c1, 3, 1)
        self.layer2 = _stage(c1, c2, 3, 2)
        self.layer3 = _stage(c2, c3, 2, 2)
        self.avgpool = TdLayer(nn.AdaptiveAvgPool2d((1, 1)))
        self.fc1 = nn.Linear(c3, hidden)
        self.fc1_s = TdLayer(self.fc1)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.fc2_s = TdLayer(self.fc2)
        self.spike = LIFSpike()

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[B, C, H, W]``. Returns: ``[B, T, num_classes]``."""
        x = x.unsqueeze(1).repeat(1, self.T, 1, 1, 1)  # [B, T, C, H, W]
        x = self.spike(self.conv1_s(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 2)  # [B, T, 512w]
        return self.fc2_s(self.spike(self.fc1_s(x)))


class Layer(nn.Module):
    """VGG ``Layer``: ``SeqToANNContainer(conv3x3, BN)`` then ``LIFSpike``."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.fwd = SeqToANNContainer(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out))
        self.act = LIFSpike()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.fwd(x))


VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512, 512)


class OfficialVGG(nn.Module):
    """Official-style VGGSNN (``use_pooling``) or VGGSNNwoAP: ``[B, T, 2, H, W]`` in,
    ``[B, T, num_classes]`` out; one shared pooling module, as in the original.

    Args:
        channels: Output channels of the eight conv layers.
        use_pooling: AvgPool2d(2) after every second layer; otherwise those convs have stride 2.
        side: Spatial side of the last feature map (3 for 48x48 inputs).
        num_classes: Output classes.
        in_channels: Input channels (2 polarities).
    """

    def __init__(
        self,
        channels: tuple[int, ...] = VGG_CHANNELS,
        use_pooling: bool = True,
        side: int = 3,
        num_classes: int = 10,
        in_channels: int = 2,
    ) -> None:
        super().__init__()
        pool, layers = SeqToANNContainer(nn.AvgPool2d(2)), []
        for index, (c_in, c_out) in enumerate(zip((in_channels, *channels[:-1]), channels)):
            layers.append(Layer(c_in, c_out, 2 if index % 2 and not use_pooling else 1))
            layers += [pool] if index % 2 and use_pooling else []
        self.features = nn.Sequential(*layers)
        self.classifier = SeqToANNContainer(nn.Linear(channels[-1] * side * side, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[B, T, C, H, W]``. Returns: ``[B, T, num_classes]``."""
        return self.classifier(torch.flatten(self.features(x), 2))


def tet_loss_official(outputs: Tensor, labels: Tensor, lamb: float, means: float = 1.0) -> Tensor:
    """Official ``TET_loss`` on batch-major outputs ``[B, T, C]``; scalar."""
    loss_es = 0
    for t in range(outputs.size(1)):
        loss_es += F.cross_entropy(outputs[:, t, ...], labels)
    loss_es = loss_es / outputs.size(1)
    loss_mmd = F.mse_loss(outputs, torch.zeros_like(outputs).fill_(means)) if lamb else 0
    return (1 - lamb) * loss_es + lamb * loss_mmd


if __name__ == "__main__":
    import sys

    print(
        "benchmarks/official_style.py is a library module (the official-style reference models); "
        "run benchmarks/train_throughput.py to benchmark them",
        file=sys.stderr,
    )
    sys.exit(2)

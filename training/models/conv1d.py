"""A 1-D spiking CNN for MNIST-1D, for both encodings (``training.data.mnist1d``).

``mnist1d_snn``: ``[Conv1d(k=3, same) -> BN -> LIF -> AvgPool1d(2)] * len(channels)`` then
``Flatten -> Linear`` on every time step, with no neuron on the output layer (TET's readout). A
pooling is skipped once the length is 1. Inputs are ``[B, 1, 1, L]`` (static: repeated over T by
``SpikingModel``) or time-major ``[T, B, 1, 1, L]`` (sequence encoding, ``L = 40 / T``); the
dummy height 1 keeps the toolkit's ``(C, H, W)`` sample layout. Output ``[T, B, num_classes]``.

Default channels (32, 32, 32) on the static encoding (L = 40): 40 -> 20 -> 10 -> 5, so the readout
is ``Linear(160 -> 10)``; 8,042 parameters. The ANN CNN of the MNIST-1D paper has three convs
of 25 channels (stride 2) and a linear readout, about 5,000 parameters.
"""

from __future__ import annotations

from torch import Tensor, nn

from training.models.layers import SeqToANN, SpikingModel, scaled_channels
from training.models.registry import register

__all__ = ["SpikingConv1d", "mnist1d_snn"]


class SpikingConv1d(SpikingModel):
    """``[Conv1d -> BN -> LIF -> AvgPool1d(2)] * len(channels) -> Linear`` over time.

    Args:
        in_channels: Input channels (1 for MNIST-1D).
        num_classes: Output classes.
        length: Samples per time step (40 static, 40 / T sequence).
        channels: Output channels of the conv blocks.
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF``.
        kernel_size: Odd conv kernel size (same padding).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        length: int,
        channels: tuple[int, ...],
        T: int,
        neuron: dict | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__(T, neuron)
        if length < 1 or not channels:
            raise ValueError(f"need length >= 1 and at least one block, got {length}, {channels}")
        blocks: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels):
            conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False)
            blocks += [SeqToANN(conv, nn.BatchNorm1d(c_out)), self.lif()]
            if length > 1:
                blocks.append(SeqToANN(nn.AvgPool1d(2)))
                length //= 2
        self.features = nn.Sequential(*blocks)
        self.classifier = SeqToANN(nn.Flatten(), nn.Linear(channels[-1] * length, num_classes))

    def forward_sequence(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, C, 1, L]``. Returns: ``[T, B, num_classes]`` (no LIF on the output)."""
        if x.shape[-2] != 1:
            raise ValueError(f"expected [T, B, C, 1, L] with height 1, got {tuple(x.shape)}")
        return self.classifier(self.features(x[..., 0, :]))  # [T, B, C, L] in


@register("mnist1d_snn")
def mnist1d_snn(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 40,
    channels: tuple[int, ...] = (32, 32, 32),
    width: float = 1.0,
    T: int = 4,
    neuron: dict | None = None,
) -> SpikingConv1d:
    """The MNIST-1D spiking CNN; ``image_size``: length per step; ``width`` scales channels."""
    scaled = tuple(scaled_channels(c, width) for c in channels)
    return SpikingConv1d(in_channels, num_classes, image_size, scaled, T, neuron)

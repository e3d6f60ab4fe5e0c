"""Time-major building blocks shared by every model: merged-batch wrappers and the encoder.

Stateless layers run on the merged ``T*B`` batch, so BatchNorm statistics are shared over time
and batch (the paper's tdBN as the official code implements it: a plain ``BatchNorm2d``).
"""

from __future__ import annotations

from torch import Tensor, nn

from training.neurons import LIF

__all__ = ["SeqToANN", "conv_bn", "SpikingModel", "scaled_channels", "neuron_options"]


class SeqToANN(nn.Sequential):
    """Apply stateless modules to ``[T, B, ...]`` by merging time into the batch."""

    def forward(self, x: Tensor) -> Tensor:
        T, B = x.shape[:2]
        y = super().forward(x.flatten(0, 1))  # [T*B, ...]
        return y.view(T, B, *y.shape[1:])


def conv_bn(
    in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3, bias: bool = False
) -> SeqToANN:
    """Conv (same padding) + BatchNorm2d over the merged ``T*B`` batch."""
    return SeqToANN(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=bias),
        nn.BatchNorm2d(out_channels),
    )


class SpikingModel(nn.Module):
    """Base class: turns the input into a time-major sequence and returns ``O`` as ``[T, B, C]``.

    Subclasses implement ``forward_sequence(x: [T, B, ...]) -> [T, B, C]``. A static input
    ``[B, C, H, W]`` is repeated over ``T`` time steps (direct encoding); a 5-D input is taken as an
    already time-major sequence ``[T, B, C, H, W]`` (event frames).

    Args:
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF`` of the model.
    """

    def __init__(self, T: int, neuron: dict | None = None) -> None:
        super().__init__()
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = T
        self.neuron_kwargs = dict(neuron or {})

    def lif(self) -> LIF:
        """A new LIF layer with the model's neuron settings."""
        return LIF(**self.neuron_kwargs)

    def forward(self, x: Tensor, T: int | None = None) -> Tensor:
        """Args: x ``[B, C, H, W]`` (static) or ``[T, B, C, H, W]``; T overrides ``self.T``.

        Returns: outputs ``[T, B, num_classes]``.
        """
        if x.ndim == 4:
            x = x.unsqueeze(0).expand(T or self.T, *x.shape)  # [T, B, C, H, W]
        elif x.ndim != 5:
            raise ValueError(
                f"expected input [B, C, H, W] or [T, B, C, H, W], got {tuple(x.shape)}"
            )
        return self.forward_sequence(x)

    def forward_sequence(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def scaled_channels(channels: int, width: float) -> int:
    """Channel count ``round(channels * width)``, at least 1.

    Raises:
        ValueError: If ``width`` is not positive.
    """
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, round(channels * width))


def neuron_options(tau: float, v_threshold: float, surrogate: str, alpha: float | None) -> dict:
    """The ``LIF`` keyword arguments a factory passes to its model."""
    return {"tau": tau, "v_threshold": v_threshold, "surrogate": surrogate, "alpha": alpha}

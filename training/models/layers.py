"""Time-major building blocks shared by every model: merged-batch wrappers and the encoder.

Stateless layers run on the merged ``T*B`` batch, so BatchNorm statistics are shared over time
and batch (the paper's tdBN as the official code implements it: a plain ``BatchNorm2d``).

Static (direct-encoded) input is the same image at every time step. ``SpikingModel`` passes it as a
view expanded over ``T`` (stride 0), and ``SeqToANN`` then runs its layers once on ``[B, ...]`` and
expands the result, until the first ``LIF`` makes the sequence time-dependent. This is exact:
convs, linears and pools act per sample; BatchNorm batch statistics over ``T`` identical copies
equal those over ``B`` (mean and biased variance), and the one difference, the unbiased
``n / (n - 1)`` factor of the running-variance update, is applied with ``n = T * B * H * W``
(see ``_batch_norm_over_copies``). Outputs, gradients and running statistics equal the plain path
to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.snn.neurons import LIF
from training.snn.torch_internals import functorch_transforms_active

# Modules that act on each sample separately, so T identical copies give T identical outputs.
# Exact types only: a subclass may add cross-sample or random behaviour (e.g. dropout masks).
_PER_SAMPLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Flatten, nn.Identity, nn.ReLU)
_PER_SAMPLE += (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

__all__ = ["SeqToANN", "conv_bn", "SpikingModel", "scaled_channels"]


def _is_repeated_over_time(x: Tensor) -> bool:
    """True for ``[T, B, ...]`` with ``T > 1`` whose time steps share memory (an expanded view)."""
    # Not under torch.func transforms: the running-stat update below mutates buffers in place.
    return x.ndim > 1 and x.shape[0] > 1 and x.stride(0) == 0 and not functorch_transforms_active()


def _batch_norm_over_copies(bn: nn.Module, x: Tensor, copies: int) -> Tensor:
    """Batch-statistics ``bn`` on ``copies`` stacked copies of ``x``, computed on ``x`` alone.

    Normalization uses the batch mean and biased variance, which are the same for the copies and
    for ``x``. In training mode the running variance gets the unbiased variance of the copies,
    ``var * n / (n - 1)`` with ``n = copies * (elements per channel of x)``, as ``bn`` would.

    Args:
        bn: A ``BatchNorm{1,2,3}d`` in training mode or without running statistics.
        x: One copy, ``[B, C, ...]``.
        copies: Number of copies ``T`` (>= 2).

    Returns:
        ``bn`` applied to one copy, ``[B, C, ...]``.
    """
    # torch.batch_norm, not F.batch_norm: one value per channel in ``x`` is fine with copies >= 2.
    y = torch.batch_norm(
        x, bn.weight, bn.bias, None, None, True, 0.0, bn.eps, torch.backends.cudnn.enabled
    )
    if bn.training and bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            dims = [0, *range(2, x.ndim)]
            var, mean = torch.var_mean(x.to(bn.running_var.dtype), dim=dims, correction=0)
            n = copies * (x.numel() // x.shape[1])
            bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            bn.running_var.mul_(1 - factor).add_(var * (n / (n - 1)), alpha=factor)
    return y


class SeqToANN(nn.Sequential):
    """Apply stateless modules to ``[T, B, ...]`` by merging time into the batch.

    An input repeated over time (an expanded view, stride 0 in ``T``) is computed once on
    ``[B, ...]`` and returned expanded, when every module acts per sample (convs, linears, pools,
    BatchNorm); see the module docstring for why this is exact.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, ...]``. Returns: ``[T, B, ...]`` (expanded over T if ``x`` is)."""
        T, B = x.shape[:2]
        if _is_repeated_over_time(x) and self._is_per_sample():
            y = self._forward_once(x[0], T)  # [B, ...]
            return y.unsqueeze(0).expand(T, *y.shape)
        y = super().forward(x.flatten(0, 1))  # [T*B, ...]
        return y.view(T, B, *y.shape[1:])

    def _is_per_sample(self) -> bool:
        return all(type(module) in _PER_SAMPLE + _BATCH_NORMS for module in self)

    def _forward_once(self, x: Tensor, copies: int) -> Tensor:
        for module in self:
            if type(module) in _BATCH_NORMS and (module.training or module.running_mean is None):
                x = _batch_norm_over_copies(module, x, copies)  # batch statistics
            else:
                x = module(x)
        return x


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

    With ``use_static_stem`` (class attribute, default True) the repeated input is an expanded
    view, so the layers before the first ``LIF`` run once per image instead of ``T`` times (exact,
    see the module docstring; parameter and buffer names are unchanged). A model, or an instance,
    sets it to False to materialize the ``T`` copies instead.

    Args:
        T: Default number of time steps for static inputs.
        neuron: Keyword arguments for every ``LIF`` of the model.
    """

    use_static_stem: bool = True

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
            x = x.unsqueeze(0).expand(T or self.T, *x.shape)  # [T, B, C, H, W], stride 0 in T
            if not self.use_static_stem:
                x = x.contiguous()
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

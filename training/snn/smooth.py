"""The surrogate-forward SNN: the same weights with the smooth surrogate step in place of the spike.

A trained SNN fires with the Heaviside step Theta; its gradients came from the surrogate's
derivative sigma'. Replacing Theta by sigma itself in the forward pass (``surrogate_step``, the
integral of the surrogate derivative) gives the "surrogate-forward" network whose gradients the
trainer actually followed. Its accuracy and loss against the hard-spike network's are the
surrogate-to-spike gap (SAST, Nicholson 2026: flatter minima shrink it). The reset keeps its form
``u * (1 - s)`` with the smooth ``s``; nothing else of the network changes.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from training.snn.neurons import LIF, surrogate_step

__all__ = ["SPIKES", "SmoothLIF", "smooth_model"]

SPIKES = ("hard", "smooth")  # the forward pass's step: Theta (as trained) or the surrogate's sigma


class SmoothLIF(LIF):
    """A ``LIF`` layer whose spike is the smooth surrogate step sigma instead of Theta.

    Args:
        tau, v_threshold, surrogate, alpha: As :class:`~training.snn.neurons.LIF`.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, ...]`` input currents. Returns: sigma values ``[T, B, ...]``."""
        u = torch.zeros_like(x[0])
        outputs = []
        for t in range(x.shape[0]):
            u = self.tau * u + x[t]
            s = surrogate_step(u - self.v_threshold, self.surrogate, self.alpha)
            u = u * (1 - s)
            outputs.append(s)
        return torch.stack(outputs)


def smooth_model(model: nn.Module, alpha: float | None = None) -> nn.Module:
    """A copy of ``model`` whose every ``LIF`` runs the smooth step of its own surrogate.

    Args:
        model: Any module holding ``LIF`` layers; it is not changed.
        alpha: The surrogate width/slope to use instead of each layer's own (None: its own); a
            narrow triangle (small alpha) approaches the hard step.

    Returns:
        The copy (same parameters and buffers, same train/eval mode).

    Raises:
        ValueError: If ``model`` has no ``LIF`` layer.
    """
    twin = copy.deepcopy(model)
    names = [name for name, module in twin.named_modules() if isinstance(module, LIF)]
    if not names:
        raise ValueError("the model has no LIF layer: there is no spike to smooth")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = twin.get_submodule(parent_name) if parent_name else twin
        old = getattr(parent, child)
        smooth = SmoothLIF(
            old.tau, old.v_threshold, old.surrogate, old.alpha if alpha is None else alpha
        )
        smooth.train(old.training)
        setattr(parent, child, smooth)
    return twin

"""Spike counting: forward hooks on every LIF layer (training, evaluation and surfaces share it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from training.snn.neurons import LIF

__all__ = ["spike_counter"]


@contextlib.contextmanager
def spike_counter(model: nn.Module) -> Iterator[dict[str, list[float]]]:
    """Count spikes of every LIF layer during the forwards inside the block.

    Yields:
        ``{layer_name: [spikes, neuron_steps]}``, filled as forwards run; hooks are removed after.
    """
    counts: dict[str, list[float]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, LIF):
            counts[name] = [0.0, 0.0]

            def hook(module, inputs, output, name=name):
                counts[name][0] += float(output.detach().sum())
                counts[name][1] += output.numel()

            handles.append(module.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()

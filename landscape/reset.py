"""Neuron-state resets: the hook called before every forward of a stateful (spiking) model.

Stateful neurons (SpikingJelly's ``MemoryModule``, hand-written neurons keeping a membrane
potential on the module) carry their state from one forward into the next unless reset. The
engine calls one hook with the model before every forward; :func:`resolve_reset` finds it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["Reset", "reset_states", "resolve_reset"]

Reset = Callable[[nn.Module], None] | bool | None
"""A neuron-state reset: a callable ``reset(model)``, ``None`` (find one) or ``False`` (none)."""


def reset_states(model: nn.Module) -> None:
    """Call ``reset()`` on every submodule that has one (what SpikingJelly's ``reset_net`` does).

    Args:
        model: Any module.
    """
    for module in model.modules():
        if callable(getattr(module, "reset", None)):
            module.reset()


def resolve_reset(model: nn.Module, reset: Reset) -> Callable[[nn.Module], None] | None:
    """The hook to call with ``model`` before every forward, or None.

    Args:
        model: Any module.
        reset: A callable (used as is); ``False`` (no reset); ``None`` (automatic: SpikingJelly's
            ``functional.reset_net`` if a submodule comes from SpikingJelly, else
            :func:`reset_states` if a submodule has a ``reset()`` method, else no reset).
            SpikingJelly is imported only when the model already uses it.

    Returns:
        The hook, or None.

    Raises:
        ValueError: On ``reset=True`` or another non-callable value.
    """
    if reset is False:
        return None
    if reset is not None:
        if not callable(reset):
            raise ValueError(f"reset must be a callable, None (automatic) or False, got {reset!r}")
        return reset
    modules = list(model.modules())
    if any(type(m).__module__.startswith("spikingjelly.") for m in modules):
        from spikingjelly.activation_based import functional  # the model already imported it

        return functional.reset_net
    if any(callable(getattr(m, "reset", None)) for m in modules):
        return reset_states
    return None

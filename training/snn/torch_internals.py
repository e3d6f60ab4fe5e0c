"""The private PyTorch APIs the toolkit relies on, in one place.

Each is wrapped in a function with one documented meaning; tests/training/test_torch_internals.py
checks every one in the situations the callers rely on, so a torch upgrade that removes or changes
one fails that test loudly instead of making training silently slower or wrong. Callers:
``training.snn.neurons`` (fused LIF: when to fall back to the differentiable reference, and
whether a cotangent is batched) and ``training.models.layers`` (the static-stem shortcut of
``SeqToANN``).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor

__all__ = ["functorch_transforms_active", "forward_ad_active", "is_batched"]


def functorch_transforms_active() -> bool:
    """True inside a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ...), else False.

    Private: ``torch._C._are_functorch_transforms_active``, the flag ``autograd.Function.apply``
    itself checks. Public alternative and its cost: none answers the question; without it the
    fused LIF (no vmap/jvp rule) would have to be dropped for the reference ``lif_multistep``
    everywhere (slower training, more saved activations), and ``SeqToANN`` would have to
    materialize the ``T`` copies of a static input always (``T`` times the stem's compute),
    because its running-statistics update mutates buffers in place, which transforms forbid.
    """
    return torch._C._are_functorch_transforms_active()


def forward_ad_active() -> bool:
    """True while a forward-mode AD level is open (``forward_ad.dual_level()``), else False.

    Private: ``torch.autograd.forward_ad._current_level`` (-1 when no level is open). Public
    alternative and its cost: ``forward_ad.unpack_dual(x).tangent is not None`` on each LIF input
    reads this same attribute internally and adds a dispatcher call per LIF forward inside a
    level; it would also keep the fused LIF for inputs without a tangent inside a level, so
    gradients there would change to rounding.
    """
    return forward_ad._current_level >= 0


def is_batched(tensor: Tensor) -> bool:
    """True for a tensor batched by ``torch.func.vmap`` or by ``autograd.grad(...,
    is_grads_batched=True)`` (the legacy vmap), else False.

    Private: ``torch._C._dispatch_keys`` (the legacy ``Batched`` key has no Python enum member,
    hence the repr). Public alternative and its cost: none detects the legacy batching; the fused
    LIF backward would have to compute ``grad * derivative`` out of place always, one extra
    activation-sized tensor per LIF layer and backward.
    """
    return "Batched" in repr(torch._C._dispatch_keys(tensor))

"""Leaky integrate-and-fire neurons with surrogate gradients, exactly as in TET.

Deng et al. (2022), Eqs. 1-5, and the official ``LIFSpike``/``ZIF`` code:

    u[t] = tau * u[t-1] + I[t]            (tau = 0.5, u[0] = 0, no (1 - tau) input factor)
    s[t] = Theta(u[t] - V_th)             (strict: fire iff u > V_th, V_th = 1)
    u[t] = u[t] * (1 - s[t])              (hard reset to 0; the spike is NOT detached)

The Heaviside step gets a surrogate derivative in the backward pass. Every surrogate here is an
``autograd.Function`` in ``setup_context`` style whose backward is written in differentiable torch
ops, so double backward (Hessian-vector products) is exact, and which defines ``jvp`` and uses
the generated vmap rule, so ``torch.func.jvp(torch.func.grad(f))`` and ``vmap`` work too.
No fused kernel is used: a backward computed from no-grad saved tensors silently drops the
second-order terms that flow through the neuron (see the reference notes, section 7.2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SURROGATES", "surrogate_derivative", "spike", "lif_multistep", "LIF"]


def _triangle(x: Tensor, alpha: float) -> Tensor:
    # TET's ZIF with gamma = alpha: max(0, gamma - |x|) / gamma^2, peak 1/gamma, integral 1.
    return (alpha - x.abs()).clamp(min=0) / (alpha * alpha)


def _sigmoid(x: Tensor, alpha: float) -> Tensor:
    # Derivative of sigmoid(alpha x) (SpikingJelly's Sigmoid surrogate, default alpha = 4).
    sg = torch.sigmoid(alpha * x)
    return alpha * sg * (1 - sg)


def _arctan(x: Tensor, alpha: float) -> Tensor:
    # Derivative of arctan(pi/2 alpha x)/pi + 1/2 (SpikingJelly's ATan, default alpha = 2).
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


SURROGATES = {"triangle": (_triangle, 1.0), "sigmoid": (_sigmoid, 4.0), "arctan": (_arctan, 2.0)}
"""name -> (derivative function, default width/slope parameter)."""


def surrogate_derivative(x: Tensor, name: str = "triangle", alpha: float | None = None) -> Tensor:
    """The surrogate derivative sigma'(x) of the spike function at ``x = u - V_th``.

    Args:
        x: Membrane potential minus threshold, any shape.
        name: One of ``SURROGATES``.
        alpha: Width (triangle: gamma) or slope (sigmoid, arctan); ``None`` for the default.

    Returns:
        Tensor of the same shape as ``x``.

    Raises:
        ValueError: On an unknown surrogate name or a non-positive ``alpha``.
    """
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}")
    function, default = SURROGATES[name]
    alpha = default if alpha is None else float(alpha)
    if not alpha > 0:
        raise ValueError(f"surrogate parameter alpha must be > 0, got {alpha}")
    return function(x, alpha)


class _Spike(torch.autograd.Function):
    """Heaviside forward, surrogate backward; twice differentiable, with jvp and vmap support."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, name: str, alpha: float) -> Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, name, alpha = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.name, ctx.alpha = name, alpha

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (x,) = ctx.saved_tensors
        # Plain torch ops: autograd differentiates this again for Hessian-vector products.
        return grad_output * surrogate_derivative(x, ctx.name, ctx.alpha), None, None

    @staticmethod
    def jvp(ctx, x_tangent: Tensor, name_tangent, alpha_tangent) -> Tensor:
        (x,) = ctx.saved_tensors
        return surrogate_derivative(x, ctx.name, ctx.alpha) * x_tangent


def spike(x: Tensor, surrogate: str = "triangle", alpha: float | None = None) -> Tensor:
    """Heaviside step ``(x > 0)`` whose derivative is the chosen surrogate.

    Args:
        x: Membrane potential minus threshold.
        surrogate: One of ``SURROGATES``.
        alpha: Surrogate width or slope; ``None`` for the surrogate's default.

    Returns:
        Spikes (0. or 1.) with the dtype and shape of ``x``.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {sorted(SURROGATES)}")
    alpha = SURROGATES[surrogate][1] if alpha is None else float(alpha)
    return _Spike.apply(x, surrogate, alpha)


def lif_multistep(
    x: Tensor,
    tau: float = 0.5,
    v_threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float | None = None,
) -> Tensor:
    """Run a LIF neuron over a time-major input sequence, starting from u = 0.

    Args:
        x: Input current ``I``, shape ``[T, B, ...]``.
        tau: Leak factor (TET: 0.5).
        v_threshold: Firing threshold (TET: 1.0).
        surrogate: Surrogate derivative name.
        alpha: Surrogate width or slope (``None``: default; TET's gamma = 1).

    Returns:
        Spikes ``[T, B, ...]``.
    """
    u = torch.zeros_like(x[0])
    spikes = []
    for t in range(x.shape[0]):
        u = tau * u + x[t]
        s = spike(u - v_threshold, surrogate, alpha)
        u = u * (1 - s)  # hard reset; the spike stays in the graph, as in the official code
        spikes.append(s)
    return torch.stack(spikes)


class LIF(nn.Module):
    """Multi-step LIF layer: ``[T, B, ...]`` currents in, ``[T, B, ...]`` spikes out.

    Holds no state between calls: the membrane starts at zero on every forward.

    Args:
        tau: Leak factor.
        v_threshold: Firing threshold.
        surrogate: Surrogate derivative name (``triangle``, ``sigmoid``, ``arctan``).
        alpha: Surrogate width (triangle gamma) or slope; ``None`` for the default.
    """

    def __init__(
        self,
        tau: float = 0.5,
        v_threshold: float = 1.0,
        surrogate: str = "triangle",
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        surrogate_derivative(torch.zeros(()), surrogate, alpha)  # validate early
        self.tau, self.v_threshold, self.surrogate, self.alpha = tau, v_threshold, surrogate, alpha

    def forward(self, x: Tensor) -> Tensor:
        return lif_multistep(x, self.tau, self.v_threshold, self.surrogate, self.alpha)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, "
            f"surrogate={self.surrogate}, alpha={self.alpha}"
        )

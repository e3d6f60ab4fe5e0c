"""Leaky integrate-and-fire neurons with surrogate gradients, exactly as in TET.

Deng et al. (2022), Eqs. 1-5, and the official ``LIFSpike``/``ZIF`` code:

    u[t] = tau * u[t-1] + I[t]            (tau = 0.5, u[0] = 0, no (1 - tau) input factor)
    s[t] = Theta(u[t] - V_th)             (strict: fire iff u > V_th, V_th = 1)
    u[t] = u[t] * (1 - s[t])              (hard reset to 0; the spike is NOT detached)

The Heaviside step gets a surrogate derivative in the backward pass. Every surrogate here is an
``autograd.Function`` in ``setup_context`` style whose backward is written in differentiable torch
ops, so double backward (Hessian-vector products) is exact, and which defines ``jvp`` and uses
the generated vmap rule, so ``torch.func.jvp(torch.func.grad(f))`` and ``vmap`` work too.
``lif_multistep`` is the differentiable reference. The ``LIF`` module runs a fused version of it by
default (``lif_multistep_fused``): one ``autograd.Function`` whose forward loops over ``T`` under
no_grad with the same arithmetic (bit-identical spikes) and saves only the input, the pre-reset
membrane and the spikes, and whose hand-written BPTT backward computes the gradient autograd
computes through ``lif_multistep``, reset path ``u * (1 - s)`` included, to rounding. A backward
from no-grad saved tensors is not differentiable again and would silently drop the second-order
terms through the neuron (reference notes, section 7.2), so under ``create_graph=True`` (grad mode
on inside backward) it recomputes the sequence with ``lif_multistep`` from the saved input and
differentiates that, as SpikingJelly 2.0 does. Under torch.func transforms and forward-mode AD,
which the Function does not support, the module runs ``lif_multistep`` itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from training.snn.torch_internals import forward_ad_active, functorch_transforms_active, is_batched

__all__ = [
    "SURROGATES",
    "surrogate_derivative",
    "surrogate_step",
    "spike",
    "lif_multistep",
    "lif_multistep_fused",
    "LIF",
]


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


# In-place twins of the three functions above, for the fused backward (no autograd, no copies):
# the same operations in the same order, so the values are bit-identical (tested).
def _triangle_(x: Tensor, alpha: float) -> Tensor:
    x = x.abs_().neg_().add_(alpha).clamp_(min=0)
    return x if alpha * alpha == 1 else x.div_(alpha * alpha)  # x / 1 == x: skip the pass


def _sigmoid_(x: Tensor, alpha: float) -> Tensor:
    one_minus = torch.rsub(x.mul_(alpha).sigmoid_(), 1)
    return x.mul_(alpha).mul_(one_minus)


def _arctan_(x: Tensor, alpha: float) -> Tensor:
    # ``c / t`` on a tensor is ``t.reciprocal() * c`` in torch.
    return x.mul_(math.pi / 2 * alpha).pow_(2).add_(1).reciprocal_().mul_(alpha / 2)


_SURROGATES_INPLACE = {"triangle": _triangle_, "sigmoid": _sigmoid_, "arctan": _arctan_}


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


def _triangle_step(x: Tensor, alpha: float) -> Tensor:
    # Integral of _triangle from -inf: 0.5 + c / alpha - sign(c) c^2 / (2 alpha^2), c = clamp(x).
    c = x.clamp(-alpha, alpha)
    return 0.5 + c / alpha - c.sign() * c * c / (2 * alpha * alpha)


def _sigmoid_step(x: Tensor, alpha: float) -> Tensor:
    return torch.sigmoid(alpha * x)


def _arctan_step(x: Tensor, alpha: float) -> Tensor:
    return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5


_STEPS = {"triangle": _triangle_step, "sigmoid": _sigmoid_step, "arctan": _arctan_step}


def surrogate_step(x: Tensor, name: str = "triangle", alpha: float | None = None) -> Tensor:
    """The smooth step sigma(x) whose derivative is the surrogate (sigma' = surrogate_derivative).

    sigma rises from 0 (x -> -inf) to 1 (x -> +inf); triangle: a piecewise quadratic on
    ``[-alpha, alpha]``, sigmoid: ``sigmoid(alpha x)``, arctan: ``arctan(pi/2 alpha x)/pi + 1/2``.
    Using it in the forward pass in place of the Heaviside step gives the "surrogate-forward"
    network of the surrogate-to-spike gap (``training.snn.smooth``).

    Args:
        x: Membrane potential minus threshold, any shape.
        name: One of ``SURROGATES``.
        alpha: Width (triangle: gamma) or slope (sigmoid, arctan); ``None`` for the default.

    Returns:
        Tensor of the same shape as ``x``, values in ``[0, 1]``.

    Raises:
        ValueError: On an unknown surrogate name or a non-positive ``alpha``.
    """
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(SURROGATES)}")
    alpha = SURROGATES[name][1] if alpha is None else float(alpha)
    if not alpha > 0:
        raise ValueError(f"surrogate parameter alpha must be > 0, got {alpha}")
    return _STEPS[name](x, alpha)


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


def _lif_forward_no_grad(x: Tensor, tau: float, v_threshold: float) -> tuple[Tensor, Tensor]:
    """The forward of ``lif_multistep`` without a graph; op for op the same arithmetic.

    Args:
        x: Input current ``[T, B, ...]`` (any strides, e.g. expanded over ``T``).

    Returns:
        ``(spikes, h)``, both ``[T, B, ...]``; ``h`` is the membrane before the reset.
    """
    # Few, reused buffers: on CPU, allocating a large tensor costs more than an op on it.
    spikes, h = torch.empty_like(x), torch.empty_like(x)
    u = torch.empty_like(h[0])  # membrane after the reset
    for t in range(x.shape[0]):
        if t == 0:
            h[0].copy_(x[0])  # tau * 0 + x[0]
        else:
            torch.mul(u, tau, out=h[t]).add_(x[t])
        torch.gt(h[t], v_threshold, out=spikes[t])  # u > V_th <=> u - V_th > 0 (Sterbenz)
        torch.neg(spikes[t], out=u).add_(1).mul_(h[t])  # hard reset u * (1 - s)
    return spikes, h


def _lif_backward(
    grad_spikes: Tensor, h: Tensor, spikes: Tensor, tau: float, v_threshold: float, sg_args: tuple
) -> Tensor:
    """BPTT through ``lif_multistep`` (the gradient autograd computes, to rounding).

    With ``v[t] = h[t] * (1 - s[t])``, ``h[t+1] = tau * v[t] + x[t+1]`` and ``s = Theta(h - V_th)``
    whose derivative is the surrogate ``d = sigma'(h - V_th)`` (the reset path included):
    ``dL/dh[t] = dL/ds[t] * d[t] + dL/dh[t+1] * tau * ((1 - s[t]) - h[t] * d[t])``, and
    ``dL/dx[t] = dL/dh[t]``. Everything but the recursion itself is computed for all ``t`` at once.

    Args:
        grad_spikes: ``dL/ds``, ``[T, B, ...]``.
        h: Membrane before the reset, ``[T, B, ...]``.
        spikes: The forward's spikes, ``[T, B, ...]``.
        sg_args: ``(surrogate name, alpha)``.

    Returns:
        ``dL/dx``, ``[T, B, ...]``.
    """
    surrogate, alpha = sg_args
    derivative = _SURROGATES_INPLACE[surrogate](h - v_threshold, alpha)  # [T, B, ...]
    carry = torch.rsub(spikes, 1).addcmul_(h, derivative, value=-1)  # (1 - s) - h * d
    if is_batched(grad_spikes):
        grad_x = grad_spikes * derivative
    else:
        grad_x = derivative.mul_(grad_spikes)  # the direct term dL/ds * d, completed below
    for t in range(h.shape[0] - 2, -1, -1):
        grad_x[t].addcmul_(grad_x[t + 1], carry[t], value=tau)
    return grad_x


def _is_transformed() -> bool:
    """True inside torch.func transforms or a forward-mode AD level (no fused LIF there)."""
    # The fused Function has no jvp or vmap rule; these two flags are what PyTorch itself checks.
    return functorch_transforms_active() or forward_ad_active()


class _FusedLIF(torch.autograd.Function):
    """``lif_multistep`` in one Function; exact BPTT backward, differentiable fallback."""

    @staticmethod
    def forward(ctx, x: Tensor, tau: float, v_threshold: float, surrogate: str, alpha: float):
        spikes, h = _lif_forward_no_grad(x, tau, v_threshold)
        ctx.save_for_backward(x, h, spikes)
        ctx.options = (tau, v_threshold, surrogate, alpha)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        x, h, spikes = ctx.saved_tensors
        tau, v_threshold, surrogate, alpha = ctx.options
        create_graph = torch.is_grad_enabled()
        if create_graph or _is_transformed():
            # create_graph=True: the hand-written backward is not differentiable in x, so
            # differentiate the reference instead (SpikingJelly 2.0's _higher_order_grad).
            # The same under torch.func transforms of the backward, which it does not support.
            with torch.enable_grad():
                reference = lif_multistep(x, tau, v_threshold, surrogate, alpha)
            (grad_x,) = torch.autograd.grad(reference, x, grad_spikes, create_graph=create_graph)
        else:
            grad_x = _lif_backward(grad_spikes, h, spikes, tau, v_threshold, (surrogate, alpha))
        return grad_x, None, None, None, None


def lif_multistep_fused(
    x: Tensor,
    tau: float = 0.5,
    v_threshold: float = 1.0,
    surrogate: str = "triangle",
    alpha: float | None = None,
) -> Tensor:
    """``lif_multistep`` with a fused forward and BPTT backward; the same values and gradients.

    Double backward (``create_graph=True``) recomputes through ``lif_multistep``, so HVPs are
    exact too. Inside torch.func transforms or forward-mode AD, it calls ``lif_multistep``.

    Args:
        x: Input current ``I``, shape ``[T, B, ...]``.
        tau: Leak factor (TET: 0.5).
        v_threshold: Firing threshold (TET: 1.0).
        surrogate: Surrogate derivative name.
        alpha: Surrogate width or slope (``None``: default).

    Returns:
        Spikes ``[T, B, ...]``.

    Raises:
        ValueError: On an unknown surrogate name.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {surrogate!r}; expected one of {sorted(SURROGATES)}")
    if _is_transformed():
        return lif_multistep(x, tau, v_threshold, surrogate, alpha)
    alpha = SURROGATES[surrogate][1] if alpha is None else float(alpha)
    return _FusedLIF.apply(x, tau, v_threshold, surrogate, alpha)


class LIF(nn.Module):
    """Multi-step LIF layer: ``[T, B, ...]`` currents in, ``[T, B, ...]`` spikes out.

    Holds no state between calls: the membrane starts at zero on every forward.

    Args:
        tau: Leak factor.
        v_threshold: Firing threshold.
        surrogate: Surrogate derivative name (``triangle``, ``sigmoid``, ``arctan``).
        alpha: Surrogate width (triangle gamma) or slope; ``None`` for the default.
        use_fused: Run ``lif_multistep_fused`` (default; same values, gradients and HVPs, faster)
            instead of the plain differentiable loop ``lif_multistep``.
    """

    def __init__(
        self,
        tau: float = 0.5,
        v_threshold: float = 1.0,
        surrogate: str = "triangle",
        alpha: float | None = None,
        use_fused: bool = True,
    ) -> None:
        super().__init__()
        surrogate_derivative(torch.zeros(()), surrogate, alpha)  # validate early
        self.tau, self.v_threshold, self.surrogate, self.alpha = tau, v_threshold, surrogate, alpha
        self.use_fused = use_fused

    def forward(self, x: Tensor) -> Tensor:
        """Args: x ``[T, B, ...]`` input currents. Returns: spikes ``[T, B, ...]``."""
        multistep = lif_multistep_fused if self.use_fused else lif_multistep
        return multistep(x, self.tau, self.v_threshold, self.surrogate, self.alpha)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, "
            f"surrogate={self.surrogate}, alpha={self.alpha}"
        )

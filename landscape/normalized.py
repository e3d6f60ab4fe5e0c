"""Curvature in normalized coordinates: ``diag(|w|) H diag(|w|)``, comparable across minima.

The map ``theta -> w * theta`` (elementwise) is linear, so the Hessian of
``theta -> L(w * theta)`` at ``theta = 1`` is exactly ``diag(w) H(w) diag(w)``; its spectrum and
trace equal those of ``T_w H T_w`` with ``T_w = diag(|w|)`` (the signs are an orthogonal
similarity). Scaling a layer that feeds a BatchNorm by ``c > 0`` leaves the function unchanged,
multiplies its block of ``T_w`` by ``c`` and its block of ``H`` by ``1 / c^2`` (cross blocks by
``1 / c``), so ``lambda_max`` and the trace of ``T_w H T_w`` do not move (Dinh et al. 2017 on why
raw curvature can; Kwon et al. 2021 and Andriushchenko et al. 2023 for the ``|w|`` scaling;
Petzka et al. 2021 for the related relative flatness).

:class:`NormalizedOperator` wraps any :class:`~landscape.operators.LinearOperator` and a scale
vector, so :func:`~landscape.lanczos.top_eigenvalues` and :func:`~landscape.trace.hutchpp_trace`
apply unchanged. Blocks of vectors go through the wrapped operator as one block
(``A @ (s[:, None] * V)``), so a batched ``matmat`` of the wrapped operator is used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from landscape.objective import Objective
from landscape.operators import HessianOperator, LinearOperator, as_operator

__all__ = ["NormalizedOperator", "weight_scale", "normalized_hessian"]


class NormalizedOperator(LinearOperator):
    """``diag(s) A diag(s)`` for an operator ``A`` and a scale vector ``s`` (e.g. ``|w|``).

    Symmetric when ``A`` is. ``curvature`` is ``"normalized_" + A.curvature``.

    Args:
        operator: ``A``, an operator or an ``[n, n]`` tensor.
        scale: ``s``, ``[n]``, finite; ``|w|`` for normalized coordinates (see
            :func:`weight_scale`).

    Raises:
        ValueError: If ``scale`` is not a finite ``[n]`` vector.
    """

    def __init__(self, operator: LinearOperator | Tensor, scale: Tensor) -> None:
        inner = as_operator(operator)
        n = inner.shape[0]
        if scale.shape != (n,):
            raise ValueError(f"scale must have shape [{n}] like the operator, got {scale.shape}")
        if not torch.isfinite(scale).all():
            raise ValueError("scale must be finite")
        super().__init__(n, inner.dtype, inner.device, inner.is_symmetric)
        self.operator = inner
        self.scale = scale.detach().to(inner.device, inner.dtype)
        self.curvature = f"normalized_{inner.curvature}"

    def _matvec(self, v: Tensor) -> Tensor:
        return self.scale * (self.operator @ (self.scale * v))

    def matvec(self, v: Tensor) -> Tensor:
        """``diag(s) A diag(s) v`` for ``v`` ``[n]`` or ``[n, k]``; a block goes to ``A`` whole."""
        if v.ndim == 2 and v.shape[0] == self.shape[0]:
            self.num_matvecs += v.shape[1]
            column = self.scale[:, None]
            return column * (self.operator @ (column * v.to(self.device, self.dtype)))
        return super().matvec(v)


def weight_scale(objective: Objective, params: Tensor | None = None, eta: float = 0.0) -> Tensor:
    """The elementwise scale ``|w| + eta`` of the objective's parameters, ``[P]``.

    Flattened in the objective's order (``objective.param_names``), which is the order of
    :class:`~landscape.operators.HessianOperator` and of every flat vector of the engine.

    Args:
        objective: Loss over fixed batches.
        params: Point ``w`` ``[P]`` (default: ``objective.params``).
        eta: Added to every entry (Kwon et al. use ``|w| + eta``); ``eta = 0`` keeps the exact
            invariance under rescaling, ``eta > 0`` lets zero weights move.

    Raises:
        ValueError: On a negative ``eta`` or a wrongly shaped ``params``.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    w = objective.params if params is None else params.detach()
    if w.shape != (objective.num_params,):
        raise ValueError(f"params must have shape [{objective.num_params}], got {w.shape}")
    return w.to(objective.device, objective.dtype).abs() + eta


def normalized_hessian(
    objective: Objective,
    params: Tensor | None = None,
    eta: float = 0.0,
    use_cached_graph: bool = True,
) -> NormalizedOperator:
    """``diag(|w| + eta) H(w) diag(|w| + eta)``: the Hessian in normalized coordinates at ``w``.

    With ``eta = 0`` this is the Hessian of ``theta -> L(w * theta)`` at ``theta = 1`` (up to the
    signs of ``w``, an orthogonal similarity). ``curvature`` is
    ``"normalized_autograd_surrogate_hessian"``.

    Args:
        objective: Loss over fixed batches.
        params: Point ``w`` ``[P]`` (default: ``objective.params``).
        eta: See :func:`weight_scale`.
        use_cached_graph: See :class:`~landscape.operators.HessianOperator`.
    """
    hessian = HessianOperator(objective, params, use_cached_graph=use_cached_graph)
    return NormalizedOperator(hessian, weight_scale(objective, params, eta))

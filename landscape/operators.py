"""Curvature as linear operators on the flat parameter vector: something with ``@`` and ``.shape``.

* :class:`DenseOperator` wraps a ``[n, n]`` tensor (for tests and small problems).
* :class:`HessianOperator` is the Hessian of an :class:`~landscape.objective.Objective` by
  Hessian-vector products (Pearlmutter 1994). For a surrogate-gradient SNN this is the
  "autograd surrogate Hessian": the derivative of the surrogate backward graph, symmetric.
* :class:`SGFieldJacobianOperator` is the Jacobian of the surrogate-gradient *field*
  ``g(theta)`` by central finite differences, ``(g(theta + eps v) - g(theta - eps v)) / (2 eps)``:
  the linearization of what the optimizer follows. It is not symmetric for SNNs (the forward uses
  the Heaviside step, the backward the surrogate), so symmetric solvers refuse it.

:func:`estimate_asymmetry` measures ``||J - J^T||_F / ||J||_F`` from products only: for
independent Gaussian ``u, v``, ``E[(u^T M v)^2] = ||M||_F^2``, so
``E[(u^T J v - v^T J u)^2] = ||J - J^T||_F^2`` (a Hutchinson-style estimator, Hutchinson 1989).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from landscape.objective import Objective
from landscape.results import AsymmetryResult

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "HessianOperator",
    "SGFieldJacobianOperator",
    "as_operator",
    "require_symmetric",
    "estimate_asymmetry",
    "random_vectors",
]


class LinearOperator:
    """A square linear map on ``R^n`` known only through products.

    Subclasses implement ``_matvec(v [n]) -> [n]`` and may implement ``_matmat(V [n, k])`` for
    a faster block product (the default loops over the columns). ``A @ v`` accepts ``[n]`` or
    ``[n, k]`` (the latter is :meth:`matmat`) and counts ``k`` products in ``num_matvecs``.

    Attributes:
        shape: ``(n, n)``.
        dtype: Dtype of vectors.
        device: Device of vectors.
        is_symmetric: Whether ``A == A^T`` (symmetric solvers refuse operators where it is False).
        curvature: Name of the curvature represented, recorded in results.
        num_matvecs: Number of matrix-vector products done so far.
        block_size: Block size that block solvers use by default (1: one vector at a time;
            operators whose :meth:`matmat` is faster per product than single products say so).
    """

    curvature = "linear_operator"
    block_size = 1

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device, is_symmetric: bool):
        self.shape = (n, n)
        self.dtype, self.device, self.is_symmetric = dtype, torch.device(device), is_symmetric
        self.num_matvecs = 0

    def _matvec(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def _matmat(self, V: Tensor) -> Tensor:
        return torch.stack([self._matvec(column) for column in V.T], dim=1)

    def _check(self, v: Tensor, ndims: tuple[int, ...]) -> Tensor:
        n = self.shape[0]
        if v.ndim not in ndims or v.shape[0] != n or 0 in v.shape:
            expected = f"a vector [{n}] or a block [{n}, k]" if 1 in ndims else f"a block [{n}, k]"
            raise ValueError(f"expected {expected}, got {tuple(v.shape)}")
        return v.to(self.device, self.dtype)

    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for ``v`` of shape ``[n]``, or ``A V`` for ``[n, k]`` (see :meth:`matmat`).

        Raises:
            ValueError: On a wrong shape.
        """
        v = self._check(v, (1, 2))
        if v.ndim == 2:
            return self.matmat(v)
        self.num_matvecs += 1
        return self._matvec(v)

    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` for a block ``V [n, k]``: ``k`` products, batched where the operator can.

        Raises:
            ValueError: On a wrong shape.
        """
        V = self._check(V, (2,))
        self.num_matvecs += V.shape[1]
        return self._matmat(V)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.shape[0]}, dtype={self.dtype}, device={self.device})"


class DenseOperator(LinearOperator):
    """A dense matrix as an operator.

    Args:
        matrix: ``[n, n]`` tensor.
        is_symmetric: ``None`` checks ``matrix == matrix.T`` to ``sqrt(eps)`` relative.

    Raises:
        ValueError: If ``matrix`` is not square 2-D or not floating.
    """

    curvature = "dense_matrix"

    def __init__(self, matrix: Tensor, is_symmetric: bool | None = None) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square [n, n], got {tuple(matrix.shape)}")
        if not matrix.is_floating_point():
            raise ValueError(f"matrix must be floating point, got {matrix.dtype}")
        if is_symmetric is None:
            scale = matrix.abs().max().clamp_min(1e-300)
            tol = torch.finfo(matrix.dtype).eps ** 0.5
            is_symmetric = bool(((matrix - matrix.T).abs().max() / scale) <= tol)
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device, is_symmetric)
        self.matrix = matrix

    def _matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V  # one matmul for a block of columns


class HessianOperator(LinearOperator):
    """Hessian of an objective at ``params`` by exact Hessian-vector products.

    ``A @ V`` with ``V [P, k]`` computes the ``k`` products in batched passes of at most
    ``max_block`` columns (:meth:`Objective.hvp` with a block), equal to single products to
    rounding.

    Args:
        objective: The loss over fixed batches.
        params: Point ``theta`` ``[P]`` (default: the model's parameters).
        use_cached_graph: Keep the gradient graph alive so each product is one double-backward
            pass (about 1.5-2x faster; memory: all activations of all batches). Otherwise every
            product reruns forward and backward per batch.
        batched: Batch the columns of a block (``False``: one product per column; default: off
            on the CPU, where a batched block of 16 measured 0.93x the per-product throughput of
            single products on the digits SNN, on elsewhere).
        max_block: Most columns per batched pass (bounds the memory: about ``max_block`` times
            that of one product).
        block_size: Default block size of block solvers on this operator (default: 1 on the
            CPU, where batched products measured no faster per product than single ones on the
            digits SNN; 8 on other devices).

    Raises:
        ValueError: If ``max_block`` or ``block_size`` is below 1.
    """

    curvature = "autograd_surrogate_hessian"

    def __init__(
        self,
        objective: Objective,
        params: Tensor | None = None,
        use_cached_graph: bool = True,
        batched: bool | None = None,
        max_block: int = 32,
        block_size: int | None = None,
    ) -> None:
        super().__init__(objective.num_params, objective.dtype, objective.device, True)
        on_cpu = objective.device.type == "cpu"
        batched = not on_cpu if batched is None else batched
        if block_size is None:
            block_size = 1 if on_cpu else 8
        if min(max_block, block_size) < 1:
            raise ValueError(
                f"max_block and block_size must be >= 1, got {max_block}, {block_size}"
            )
        self.objective, self.params = objective, params
        self.batched, self.max_block, self.block_size = batched, max_block, block_size
        self._hvp: Callable[[Tensor], Tensor] = (
            objective.hvp_function(params)
            if use_cached_graph
            else (lambda v: objective.hvp(v, params))
        )

    def _matvec(self, v: Tensor) -> Tensor:
        return self._hvp(v)

    def _matmat(self, V: Tensor) -> Tensor:
        if not self.batched:
            return super()._matmat(V)
        chunks = [
            self._hvp(V[:, i : i + self.max_block]) for i in range(0, V.shape[1], self.max_block)
        ]
        return torch.cat(chunks, dim=1)


class SGFieldJacobianOperator(LinearOperator):
    """Jacobian of the (surrogate) gradient field by central finite differences; not symmetric.

    ``J v ~ (g(theta + eps v) - g(theta - eps v)) / (2 eps)`` with ``eps = step / ||v||`` so the
    parameter change has norm ``step``.

    Args:
        objective: The loss over fixed batches.
        params: Point ``theta`` ``[P]`` (default: the model's parameters).
        step: Norm of the parameter perturbation (default ``eps_dtype^(1/3) * max(1, ||theta||)``,
            the usual optimum for central differences).

    Raises:
        ValueError: If ``step`` is not positive.
    """

    curvature = "sg_field_jacobian_fd"

    def __init__(
        self, objective: Objective, params: Tensor | None = None, step: float | None = None
    ) -> None:
        super().__init__(objective.num_params, objective.dtype, objective.device, False)
        self.objective = objective
        self.theta = objective.params if params is None else params.detach().clone()
        if step is None:
            scale = max(1.0, self.theta.norm().item())
            step = torch.finfo(objective.dtype).eps ** (1 / 3) * scale
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step}")
        self.step = float(step)

    def _matvec(self, v: Tensor) -> Tensor:
        norm = v.norm()
        if norm == 0:
            return torch.zeros_like(v)
        epsilon = self.step / norm
        plus = self.objective.grad(self.theta + epsilon * v)
        minus = self.objective.grad(self.theta - epsilon * v)
        return (plus - minus) / (2 * epsilon)


def as_operator(A: LinearOperator | Tensor) -> LinearOperator:
    """Wrap a tensor as a :class:`DenseOperator`; pass operators through.

    Raises:
        ValueError: If ``A`` is neither.
    """
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, Tensor):
        return DenseOperator(A)
    raise ValueError(f"A must be a LinearOperator or a Tensor, got {type(A).__name__}")


def require_symmetric(A: LinearOperator | Tensor, method: str) -> LinearOperator:
    """Return ``A`` as an operator, or raise if it is not symmetric.

    Raises:
        ValueError: If ``A.is_symmetric`` is False.
    """
    operator = as_operator(A)
    if not operator.is_symmetric:
        raise ValueError(
            f"{method} needs a symmetric operator, but {type(operator).__name__} "
            f"({operator.curvature}) is not symmetric; use the Hessian (HessianOperator), "
            "or estimate_asymmetry / the trace for the surrogate-gradient-field Jacobian"
        )
    return operator


def random_vectors(
    n: int, k: int | None, kind: str, generator: torch.Generator | None, like: LinearOperator
) -> Tensor:
    """Random probes ``[n]`` (``k=None``) or ``[n, k]``, drawn on the CPU, moved to ``like``.

    Args:
        n: Dimension.
        k: Number of columns, or ``None`` for one vector.
        kind: ``"rademacher"`` (entries +-1) or ``"gaussian"``.
        generator: CPU generator (results do not depend on the device).
        like: Operator whose dtype and device the probes take.

    Raises:
        ValueError: On an unknown kind.
    """
    shape = (n,) if k is None else (n, k)
    if kind == "gaussian":
        probes = torch.randn(shape, generator=generator, dtype=torch.float64)
    elif kind == "rademacher":
        probes = torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1
    else:
        raise ValueError(f"kind must be 'rademacher' or 'gaussian', got {kind!r}")
    return probes.to(like.device, like.dtype)


def estimate_asymmetry(
    A: LinearOperator | Tensor, num_probes: int, generator: torch.Generator | None = None
) -> AsymmetryResult:
    """Estimate ``||A - A^T||_F / ||A||_F`` from ``2 * num_probes`` products.

    For independent Gaussian ``u, v``: ``E[(u^T A v - v^T A u)^2] = ||A - A^T||_F^2`` and
    ``E[(u^T A v)^2] = ||A||_F^2``.

    Args:
        A: Operator or ``[n, n]`` tensor.
        num_probes: Number of probe pairs ``(u, v)``, at least 2.
        generator: CPU generator.

    Returns:
        :class:`AsymmetryResult` with the ratio and the two squared norms with standard errors.

    Raises:
        ValueError: If ``num_probes < 2``.
    """
    if num_probes < 2:
        raise ValueError(f"num_probes must be >= 2 to report a standard error, got {num_probes}")
    operator = as_operator(A)
    start = operator.num_matvecs
    n = operator.shape[0]
    differences, norms = [], []
    for _ in range(num_probes):
        u, v = random_vectors(n, 2, "gaussian", generator, operator).T
        uAv, vAu = torch.dot(u, operator @ v).item(), torch.dot(v, operator @ u).item()
        differences.append((uAv - vAu) ** 2)
        norms.append((uAv**2 + vAu**2) / 2)
    differences_t = torch.tensor(differences, dtype=torch.float64)
    norms_t = torch.tensor(norms, dtype=torch.float64)
    anti, full = differences_t.mean().item(), norms_t.mean().item()
    return AsymmetryResult(
        relative=(anti / full) ** 0.5 if full > 0 else float("nan"),
        antisymmetric_fro_sq=anti,
        antisymmetric_fro_sq_stderr=(differences_t.std() / num_probes**0.5).item(),
        fro_sq=full,
        fro_sq_stderr=(norms_t.std() / num_probes**0.5).item(),
        num_matvecs=operator.num_matvecs - start,
    )

"""Stochastic trace estimators from matrix-vector products.

* Hutchinson (1989): ``tr(A) ~ (1/m) sum_i g_i^T A g_i`` with Rademacher ``g_i`` (entries +-1),
  unbiased with variance ``2 (||A||_F^2 - sum_i A_ii^2) / m``.
* Hutch++ (Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace Estimation",
  SOSA 2021, Alg. 1): spend a third of the products on a sketch ``Q = orth(A S)`` of the dominant
  range, take ``tr(Q^T A Q)`` exactly (a third), and Hutchinson on the deflated remainder
  ``(I - Q Q^T) A (I - Q Q^T)`` (a third). Error ``O(1/m)`` instead of ``O(1/sqrt(m))`` for
  matrices with decaying spectra, such as Hessians.

Sketches and probes go to the operator as blocks (``A @ V``, batched where the operator can).
Both work for non-symmetric operators too. The standard error is that of the Hutchinson part
(conditional on the sketch for Hutch++).
"""

from __future__ import annotations

import torch
from torch import Tensor

from landscape.operators import LinearOperator, as_operator, random_vectors
from landscape.results import TraceResult
from landscape.xtrace import xnystrace_trace, xtrace_trace

__all__ = ["hutchinson_trace", "hutchpp_trace", "TRACE_METHODS", "estimate_trace"]

TRACE_METHODS = ("hutch++", "hutchinson", "xtrace", "xnystrace")


def _mean_and_stderr(samples: Tensor) -> tuple[float, float]:
    samples = samples.to(torch.float64)
    return samples.mean().item(), (samples.std() / samples.numel() ** 0.5).item()


def _quadratic_forms(operator: LinearOperator, probes: Tensor) -> Tensor:
    """``g_i^T A g_i`` for every column of ``probes [n, m]``, from one block product, ``[m]``."""
    products = operator @ probes  # [n, m]: batched where the operator can
    return torch.stack([torch.dot(g, product) for g, product in zip(probes.T, products.T)])


def hutchinson_trace(
    A: LinearOperator | Tensor, num_matvecs: int, generator: torch.Generator | None = None
) -> TraceResult:
    """Hutchinson's estimate of ``tr(A)`` with Rademacher probes.

    Args:
        A: Square operator or ``[n, n]`` tensor.
        num_matvecs: Number of probes (one product each), at least 2.
        generator: CPU generator.

    Returns:
        :class:`~landscape.results.TraceResult` with ``stderr = std(samples) / sqrt(m)``.

    Raises:
        ValueError: If ``num_matvecs < 2``.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> hutchinson_trace(A, 10, torch.Generator().manual_seed(0)).mean  # exact for diagonal A
        55.0
    """
    if num_matvecs < 2:
        raise ValueError(f"num_matvecs must be >= 2 to report a standard error, got {num_matvecs}")
    operator = as_operator(A)
    probes = random_vectors(operator.shape[0], num_matvecs, "rademacher", generator, operator)
    mean, stderr = _mean_and_stderr(_quadratic_forms(operator, probes))
    return TraceResult(mean, stderr, num_matvecs, "hutchinson")


def hutchpp_trace(
    A: LinearOperator | Tensor, num_matvecs: int, generator: torch.Generator | None = None
) -> TraceResult:
    """Hutch++ estimate of ``tr(A)`` (Meyer et al. 2021, Alg. 1).

    Uses ``s = num_matvecs // 3`` products for the sketch ``A S``, ``s`` for ``A Q`` and the
    remaining ``num_matvecs - 2 s`` for Hutchinson on the deflated operator.

    Args:
        A: Square operator or ``[n, n]`` tensor.
        num_matvecs: Total products, at least 4 (so the Hutchinson part has 2 probes).
        generator: CPU generator.

    Returns:
        :class:`~landscape.results.TraceResult`; ``stderr`` is that of the Hutchinson part.

    Raises:
        ValueError: If ``num_matvecs < 4``.
    """
    if num_matvecs < 4:
        raise ValueError(f"num_matvecs must be >= 4 for hutch++, got {num_matvecs}")
    operator = as_operator(A)
    n = operator.shape[0]
    sketch_size = num_matvecs // 3
    num_probes = num_matvecs - 2 * sketch_size
    sketch = random_vectors(n, sketch_size, "rademacher", generator, operator)
    probes = random_vectors(n, num_probes, "rademacher", generator, operator)
    basis, _ = torch.linalg.qr(operator @ sketch)  # [n, s]
    exact = torch.trace(basis.T @ (operator @ basis)).item()
    deflated = probes - basis @ (basis.T @ probes)  # [n, m - 2s]
    mean, stderr = _mean_and_stderr(_quadratic_forms(operator, deflated))
    return TraceResult(exact + mean, stderr, 2 * sketch_size + num_probes, "hutch++")


def estimate_trace(
    A: LinearOperator | Tensor,
    num_matvecs: int,
    method: str = "hutch++",
    generator: torch.Generator | None = None,
) -> TraceResult:
    """Dispatch to a trace estimator by name, one of :data:`TRACE_METHODS`.

    ``"hutch++"``: :func:`hutchpp_trace`; ``"hutchinson"``: :func:`hutchinson_trace`;
    ``"xtrace"``: :func:`~landscape.xtrace.xtrace_trace`; ``"xnystrace"`` (symmetric positive
    semi-definite ``A`` only): :func:`~landscape.xtrace.xnystrace_trace`.

    Raises:
        ValueError: On an unknown method.
    """
    if method == "hutch++":
        return hutchpp_trace(A, num_matvecs, generator)
    if method == "hutchinson":
        return hutchinson_trace(A, num_matvecs, generator)
    if method == "xtrace":
        return xtrace_trace(A, num_matvecs, generator)
    if method == "xnystrace":
        return xnystrace_trace(A, num_matvecs, generator)
    raise ValueError(f"method must be one of {TRACE_METHODS}, got {method!r}")

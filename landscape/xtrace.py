"""Exchangeable trace estimators: XTrace and XNysTrace.

Epperly, Tropp & Webber, "XTrace: Making the most of every sample in stochastic trace
estimation", SIAM J. Matrix Anal. Appl. 45(1), 2024. Hutch++ spends its products on a sketch and,
separately, on Hutchinson probes; the exchangeable estimators use every test vector for both, in
turn, and average over the roles (the leave-one-out principle):

* **XTrace** (any square ``A``): ``k = m // 2`` test vectors ``Omega``, ``Y = A Omega = Q R``. For
  each ``i`` the basis ``Q_(i)`` of ``range(Y)`` without the column ``y_i`` comes from a downdate
  of ``Q``: ``Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T`` with ``s_i`` the unit ``i``-th column of
  ``R^{-T}`` (so ``Q s_i`` is orthogonal to every ``y_j``, ``j != i``). The ``i``-th estimate is
  ``tr(Q_(i)^T A Q_(i)) + omega_i^T (I - Q_(i) Q_(i)^T) A (I - Q_(i) Q_(i)^T) omega_i``, unbiased
  because ``Q_(i)`` does not depend on ``omega_i``; everything follows from ``Y`` and
  ``Z = A Q`` (``m`` products in two blocks) by ``k x k`` algebra. The result is the mean of the
  ``k`` estimates.
* **XNysTrace** (symmetric positive semi-definite ``A`` only): all ``m`` test vectors in one
  block ``Y = A Omega``; the ``i``-th estimate is ``tr(A_(i)) + omega_i^T (A - A_(i)) omega_i`` with
  ``A_(i)`` the Nystrom approximation ``Y_(i) (Omega_(i)^T Y_(i))^{-1} Y_(i)^T`` from the other
  ``m - 1`` vectors, downdated from the full one. For numerical stability the Nystrom
  approximation is that of ``A + nu I`` with a tiny shift ``nu`` (``nu n`` is subtracted again,
  so the estimate stays unbiased).

Test vectors: normalized Gaussians, uniform on the sphere of radius ``sqrt(n)``, as the paper
recommends, with its rescaling of the deflated term: given the other vectors, the part of
``omega_i`` outside the leave-one-out subspace has a uniformly random direction, and is rescaled
to the squared norm of the dimension it lives in (``n - k + 1`` for XTrace, ``n - m + 1`` for
XNysTrace), which keeps the estimate unbiased and lowers its variance. An estimate is exact (up to
rounding) when ``rank(A) <= m // 2 - 1`` (XTrace) or ``rank(A) <= m - 1`` (XNysTrace).

Error bars: ``stderr = std(estimates) / sqrt(number of estimates)`` as in the paper; the
estimates are exchangeable but not independent, so this is an estimate of the error, not a
rigorous bound.
"""

from __future__ import annotations

import torch
from torch import Tensor

from landscape.operators import LinearOperator, as_operator, random_vectors, require_symmetric
from landscape.results import TraceResult

__all__ = ["xtrace_trace", "xnystrace_trace"]


def _mean_and_stderr(estimates: Tensor) -> tuple[float, float]:
    estimates = estimates.to(torch.float64)
    return estimates.mean().item(), (estimates.std() / estimates.numel() ** 0.5).item()


def _sphere_vectors(
    n: int, k: int, generator: torch.Generator | None, operator: LinearOperator
) -> Tensor:
    """``[n, k]`` Gaussian columns scaled to norm ``sqrt(n)`` (so ``E[omega omega^T] = I``)."""
    gaussian = random_vectors(n, k, "gaussian", generator, operator)
    return gaussian * (n**0.5 / gaussian.norm(dim=0))


def _check_size(num_matvecs: int, minimum: int, maximum: int, method: str) -> None:
    if num_matvecs < minimum:
        raise ValueError(
            f"num_matvecs must be >= {minimum} for {method} (two test vectors at least, for a "
            f"standard error), got {num_matvecs}"
        )
    if num_matvecs > maximum:
        raise ValueError(
            f"num_matvecs must be <= {maximum} for {method} on this operator (no more test "
            f"vectors than its dimension), got {num_matvecs}"
        )


def _leave_one_out_normals(R: Tensor) -> Tensor:
    """Unit columns ``s_i`` of ``R^{-T}`` (``s_i^T r_j = 0`` for ``j != i``), ``[k, k]``.

    Computed from the SVD ``R = U diag(sigma) V^T`` as ``U diag(1/sigma) V^T`` with the singular
    values floored at ``k eps sigma_max``, so a singular ``R`` (``rank(A) < k``) gives unit
    vectors orthogonal to the range of the other columns instead of infinities.
    """
    U, sigma, Vh = torch.linalg.svd(R)
    floor = max(sigma[0].item() * R.shape[0] * torch.finfo(R.dtype).eps, torch.finfo(R.dtype).tiny)
    clamped = sigma.clamp_min(floor)
    X = U @ (Vh * (clamped[-1] / clamped)[:, None])  # R^{-T} up to a positive factor
    return X / X.norm(dim=0)


def xtrace_trace(
    A: LinearOperator | Tensor, num_matvecs: int, generator: torch.Generator | None = None
) -> TraceResult:
    """XTrace estimate of ``tr(A)`` (Epperly, Tropp & Webber 2024).

    Uses ``k = num_matvecs // 2`` test vectors: one block product ``A Omega`` for the sketch and
    one ``A Q`` for its basis (an odd ``num_matvecs`` leaves one product unused). Works for
    non-symmetric operators too.

    Args:
        A: Square operator or ``[n, n]`` tensor.
        num_matvecs: Total products, at least 4; ``num_matvecs // 2`` (the number of test
            vectors) at most ``n``.
        generator: CPU generator.

    Returns:
        :class:`~landscape.results.TraceResult` with ``method="xtrace"``, the mean of the ``k``
        leave-one-out estimates and ``stderr = std(estimates) / sqrt(k)``.

    Raises:
        ValueError: If ``num_matvecs < 4`` or ``num_matvecs > 2 n + 1``.

    Example:
        >>> A = torch.diag(torch.tensor([3.0, 2.0, 1.0] + [0.0] * 7, dtype=torch.float64))
        >>> round(xtrace_trace(A, 8, torch.Generator().manual_seed(0)).mean, 10)  # rank 3 < 4
        6.0
    """
    operator = as_operator(A)
    n = operator.shape[0]
    k = num_matvecs // 2
    _check_size(num_matvecs, 4, 2 * n + 1, "xtrace")
    omega = _sphere_vectors(n, k, generator, operator)  # [n, k]
    Y = operator @ omega
    Q, R = torch.linalg.qr(Y)
    Z = operator @ Q
    H = Q.T @ Z  # Q^T A Q
    W = Q.T @ omega  # w_i = Q^T omega_i
    T = Z.T @ omega  # t_i = Q^T A^T omega_i
    S = _leave_one_out_normals(R)
    # Q c_i = Q_(i) Q_(i)^T omega_i, so the deflated test vector is v_i = omega_i - Q c_i.
    C = W - S * (S * W).sum(0)
    # v_i^T A v_i = omega_i^T y_i - t_i^T c_i - c_i^T r_i + c_i^T H c_i (A omega_i = y_i = Q r_i)
    quadratic = (omega * Y).sum(0) - (T * C).sum(0) - (C * R).sum(0) + (C * (H @ C)).sum(0)
    norms = (omega * omega).sum(0) - (C * C).sum(0)  # ||v_i||^2
    scale = (n - k + 1) / norms.clamp_min(torch.finfo(norms.dtype).eps * n)
    estimates = torch.trace(H) - (S * (H @ S)).sum(0) + scale * quadratic
    mean, stderr = _mean_and_stderr(estimates)
    return TraceResult(mean, stderr, 2 * k, "xtrace")


def xnystrace_trace(
    A: LinearOperator | Tensor, num_matvecs: int, generator: torch.Generator | None = None
) -> TraceResult:
    """XNysTrace estimate of ``tr(A)`` for symmetric positive semi-definite ``A``.

    All ``num_matvecs`` test vectors go to the operator in one block. For an indefinite operator
    (a Hessian away from a minimum) use :func:`xtrace_trace`: the Nystrom approximation needs
    ``A`` positive semi-definite, and the estimate is refused where the shifted sketch
    ``Omega^T (A + nu I) Omega`` is not positive definite.

    Args:
        A: Symmetric positive semi-definite operator or ``[n, n]`` tensor.
        num_matvecs: Number of test vectors (one product each), at least 2 and at most ``n``.
        generator: CPU generator.

    Returns:
        :class:`~landscape.results.TraceResult` with ``method="xnystrace"``, the mean of the
        ``m`` leave-one-out estimates and ``stderr = std(estimates) / sqrt(m)``.

    Raises:
        ValueError: If ``A`` is not symmetric, ``num_matvecs < 2``, ``num_matvecs > n``, or the
            sketch shows that ``A`` is not positive semi-definite.
    """
    operator = require_symmetric(A, "xnystrace")
    n = operator.shape[0]
    m = num_matvecs
    _check_size(num_matvecs, 2, n, "xnystrace")
    omega = _sphere_vectors(n, m, generator, operator)  # [n, m]
    Y = operator @ omega
    eps = torch.finfo(Y.dtype).eps
    identity = torch.eye(m, dtype=Y.dtype, device=Y.device)

    # Omega = Q_o R_o: ||omega_i outside span(Omega_(i))||^2 = 1 / ((Omega^T Omega)^{-1})_ii.
    R_omega = torch.linalg.qr(omega)[1]
    R_omega_inv = torch.linalg.solve_triangular(R_omega, identity, upper=True)
    scale = (n - m + 1) * (R_omega_inv**2).sum(1)  # (n - m + 1) / ||that part||^2

    # The smallest shift nu (of 1, 10, 100, 1000 times eps ||Omega^T A Omega|| / sigma_min^2) at
    # which Omega^T (A + nu I) Omega passes Cholesky: nu Omega^T Omega then dominates its
    # rounding errors, and a smaller shift keeps the Nystrom approximation closer to that of A.
    sketch = omega.T @ Y
    sketch = (sketch + sketch.T) / 2
    sigma_min_sq = torch.linalg.svdvals(R_omega)[-1].item() ** 2
    size = torch.linalg.matrix_norm(sketch).item() or sigma_min_sq  # A = 0: any shift will do
    omega_gram = R_omega.T @ R_omega  # Omega^T Omega
    for factor in (1, 10, 100, 1000):
        shift = factor * eps * size / sigma_min_sq
        C, info = torch.linalg.cholesky_ex(sketch + shift * omega_gram, upper=True)  # = C^T C
        if info.item() == 0:
            break
    else:
        raise ValueError(
            "xnystrace needs a positive semi-definite operator, but Omega^T (A + nu I) Omega is "
            f"not positive definite even for nu = {shift:.3g}; use xtrace for indefinite operators"
        )
    shifted = Y + shift * omega
    R = torch.linalg.qr(shifted)[1]
    B = torch.linalg.solve_triangular(C, R, upper=True, left=False)  # Nystrom: (Q B)(Q B)^T
    X = torch.linalg.solve_triangular(C.T, identity, upper=False)  # C^{-T}; x_i^T x_i = G^{-1}_ii
    inverse_diagonal = (X**2).sum(0)
    S = X / inverse_diagonal.sqrt()
    # G = Omega^T (A + nu I) Omega. tr(A_(i)) = ||B||_F^2 - ||B s_i||^2 and
    # omega_i^T (A - A_(i)) omega_i = 1 / (G^{-1})_ii (a Schur complement of G), rescaled as above.
    estimates = (B**2).sum() - ((B @ S) ** 2).sum(0) + scale / inverse_diagonal - shift * n
    mean, stderr = _mean_and_stderr(estimates)
    return TraceResult(mean, stderr, m, "xnystrace")

"""Block Lanczos for extreme eigenpairs: ``b`` products per step, one batched pass each.

Block Lanczos (Cullum & Donath 1974; Golub & Underwood 1977) starts from ``b`` orthonormal vectors
``Q_1`` and builds ``A Q_j = Q_{j-1} B_{j-1}^T + Q_j A_j + Q_{j+1} B_j`` with ``Q_{j+1} B_j`` the QR
factorization of the residual block. The projection ``T_m = Q^T A Q`` is block tridiagonal; the
Ritz pair ``(theta, Q s)`` has the exact residual norm ``||B_m s_last||`` with ``s_last`` the last
``b`` entries of ``s`` (the block form of Parlett 1998, Sec. 13.1; Golub & Van Loan 2013,
Sec. 10.3.6). As in :mod:`landscape.lanczos`, every new block is reorthogonalized twice against
the whole basis, so the identity holds in floating point and clustered or repeated eigenvalues
(up to multiplicity ``b``) are found. It pays off where ``A @ V`` for ``V [n, b]`` costs less than
``b`` single products (operators say so through ``block_size``).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from landscape.operators import LinearOperator, random_vectors
from landscape.results import EigenResult

__all__ = ["block_top_eigenvalues", "orthogonalize", "select", "warn_unconverged"]


def select(theta: Tensor, which: str, k: int) -> Tensor:
    """Indices of the ``k`` wanted values of ``theta`` (``LA``, ``SA`` or ``LM``), in order."""
    if which == "LA":
        order = torch.argsort(theta, descending=True)
    elif which == "SA":
        order = torch.argsort(theta)
    else:
        order = torch.argsort(theta.abs(), descending=True)
    return order[:k]


def warn_unconverged(residuals: Tensor, tol: float, max_steps: int, stacklevel: int) -> None:
    """Warn (``RuntimeWarning``) if some relative residual exceeds ``tol``."""
    converged = residuals <= tol
    if not converged.all():
        warnings.warn(
            f"top_eigenvalues: {int((~converged).sum())} of {residuals.numel()} Ritz pairs did "
            f"not reach the relative residual tol={tol:g} within max_steps={max_steps} "
            f"(residuals {[f'{r:.2g}' for r in residuals.tolist()]}); increase max_steps or tol",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )


def orthogonalize(W: Tensor, basis: Tensor) -> Tensor:
    """``W`` (a vector ``[n]`` or a block ``[n, b]``) minus its part in the rows of ``basis``."""
    for _ in range(2):  # "twice is enough" (Parlett; Giraud et al. 2005)
        W = W - basis.T @ (basis @ W)
    return W


def _next_block(W: Tensor, basis: Tensor, scale: float, generator) -> tuple[Tensor, Tensor, bool]:
    """``Q_{j+1}, B_j`` from the residual block ``W``; deficient directions are replaced."""
    Q, B = torch.linalg.qr(W)
    deficient = B.diagonal().abs() <= 100 * torch.finfo(W.dtype).eps * max(scale, 1e-300)
    if not deficient.any():
        return Q, B, False
    B[deficient] = 0  # an invariant subspace: continue from fresh random directions
    fresh = torch.randn(W.shape[0], int(deficient.sum()), generator=generator, dtype=torch.float64)
    kept = torch.cat([basis, Q[:, ~deficient].T])
    fresh = orthogonalize(fresh.to(W.device, W.dtype), kept)
    Q[:, deficient] = torch.linalg.qr(fresh)[0]
    return Q, B, True


def _ritz(T: Tensor, B: Tensor, k: int, which: str, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    theta, S = torch.linalg.eigh(T)
    order = select(theta, which, k)
    theta, S = theta[order], S[:, order]
    floor = eps * theta.abs().max().clamp_min(1e-300)
    residuals = (B.to(torch.float64) @ S[-B.shape[0] :]).norm(dim=0) / theta.abs().clamp_min(floor)
    return theta, S, residuals


def block_top_eigenvalues(
    operator: LinearOperator,
    k: int,
    which: str,
    tol: float,
    max_steps: int,
    min_steps: int,
    generator: torch.Generator | None,
    return_vectors: bool,
    block_size: int,
) -> EigenResult:
    """Block Lanczos version of :func:`landscape.lanczos.top_eigenvalues` (arguments checked).

    ``max_steps`` and ``min_steps`` bound the Krylov dimension (``block_size`` per step); the
    iteration stops at the first step where all ``k`` wanted pairs have relative residual
    ``<= tol``, or when the next block would exceed ``max_steps`` or ``n``.
    """
    n, b = operator.shape[0], min(block_size, operator.shape[0])
    start, scale = operator.num_matvecs, 0.0
    basis = torch.empty(0, n, dtype=operator.dtype, device=operator.device)
    Q = torch.linalg.qr(random_vectors(n, b, "gaussian", generator, operator))[0]
    T = torch.zeros(0, 0, dtype=torch.float64)
    B_prev = None
    while True:
        Q = Q[:, : n - basis.shape[0]]  # the last block may be narrower: never beyond n
        basis = torch.cat([basis, Q.T])  # [m, n]
        W = operator @ Q  # [n, b]: one batched pass
        A_j = Q.T @ W
        W = orthogonalize(W, basis)
        scale = max(scale, A_j.abs().max().item(), W.norm(dim=0).max().item())
        Q, B, _ = _next_block(W, basis, scale, generator)
        T = _extend(T, (A_j + A_j.T).to(torch.float64) / 2, B_prev)
        B_prev, m = B.to(torch.float64), basis.shape[0]
        done = m == n or (m >= k and m + b > max_steps)
        if m >= max(min_steps, k) or done:
            theta, S, residuals = _ritz(T, B_prev, k, which, torch.finfo(operator.dtype).eps)
            if m == n:
                residuals = torch.zeros_like(residuals)  # the whole space: exact
            if done or bool((residuals <= tol).all()):
                break
    warn_unconverged(residuals, tol, max_steps, stacklevel=3)
    vectors = basis.T @ S.to(basis.dtype) if return_vectors else None
    return EigenResult(
        eigenvalues=theta,
        eigenvectors=vectors,
        residuals=residuals,
        converged=residuals <= tol,
        num_matvecs=operator.num_matvecs - start,
        num_steps=m,
        which=which,
        tol=tol,
    )


def _extend(T: Tensor, A_j: Tensor, B_prev: Tensor | None) -> Tensor:
    """Append the diagonal block ``A_j`` (and ``B_{j-1}`` below/beside it) to ``T``."""
    m, b = T.shape[0], A_j.shape[0]
    out = torch.zeros(m + b, m + b, dtype=torch.float64)
    out[:m, :m], out[m:, m:] = T, A_j
    if B_prev is not None:
        width = B_prev.shape[0]
        out[m:, m - width : m] = B_prev[:b]
        out[m - width : m, m:] = B_prev[:b].T
    return out

"""Lanczos iteration with full reorthogonalization, and extreme eigenpairs with residual control.

Lanczos (1950) builds an orthonormal Krylov basis ``Q_m`` and a tridiagonal ``T_m = Q_m^T A Q_m``;
the eigenpairs ``(theta_i, s_i)`` of ``T_m`` give Ritz pairs ``(theta_i, Q_m s_i)`` whose residual
norm is exactly ``||A Q_m s_i - theta_i Q_m s_i|| = beta_m |e_m^T s_i|`` (Parlett, "The Symmetric
Eigenvalue Problem", 1998, Sec. 13.1). Full reorthogonalization (classical Gram-Schmidt applied
twice, Parlett Sec. 13.8; Golub & Van Loan 2013, Alg. 10.3.1) keeps that identity valid in
floating point and prevents spurious copies ("ghosts") of converged eigenvalues.

:func:`top_eigenvalues` grows the Krylov space one product at a time and stops as soon as every
requested Ritz pair has relative residual ``<= tol``, so it never spends products it does not need
and never returns an unconverged pair without flagging it (cf. the reference notes, Sec. 5:
a fixed Krylov size of ``2k`` silently returned wrong eigenvalues in hessian-eigenthings).
Lanczos from one start vector finds each eigenvalue once; exact multiplicities are not resolved.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from landscape.block import block_top_eigenvalues, orthogonalize, select, warn_unconverged
from landscape.operators import LinearOperator, random_vectors, require_symmetric
from landscape.results import EigenResult

__all__ = ["LanczosState", "lanczos", "top_eigenvalues", "ritz", "WHICH"]

WHICH = ("LA", "SA", "LM")


@dataclass
class LanczosState:
    """The Lanczos decomposition ``A Q_m^T = Q_m^T T_m + beta_m q_{m+1} e_m^T`` after ``m`` steps.

    Attributes:
        num_steps: ``m``.
        alphas: ``[m]`` diagonal of ``T_m`` (float64).
        betas: ``[m]`` off-diagonal of ``T_m`` in ``betas[:-1]``; ``betas[-1]`` is ``beta_m``.
        basis: ``[m, n]`` orthonormal Lanczos vectors (rows), in the operator's dtype.
        is_breakdown: ``beta_m`` vanished: the basis spans an invariant subspace (the iteration
            continues from a fresh random vector orthogonal to it).
    """

    num_steps: int
    alphas: Tensor
    betas: Tensor
    basis: Tensor
    is_breakdown: bool

    def tridiagonal(self) -> Tensor:
        """``T_m`` as a dense ``[m, m]`` float64 matrix."""
        off = self.betas[:-1]
        return torch.diag(self.alphas) + torch.diag(off, 1) + torch.diag(off, -1)


def _unit_random(operator: LinearOperator, generator: torch.Generator | None, basis: Tensor):
    vector = random_vectors(operator.shape[0], None, "gaussian", generator, operator)
    vector = orthogonalize(vector, basis) if basis.shape[0] else vector
    return vector / vector.norm()


def lanczos(
    A: LinearOperator | Tensor,
    num_steps: int,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
) -> Iterator[LanczosState]:
    """Run Lanczos with full reorthogonalization, yielding the state after every step.

    Args:
        A: Symmetric operator or ``[n, n]`` tensor.
        num_steps: Maximum number of steps (one product each); capped at ``n``.
        generator: CPU generator for the start vector (and restarts after a breakdown).
        start: Start vector ``[n]`` (normalized here); random Gaussian if ``None``.

    Yields:
        :class:`LanczosState` after steps ``1, 2, ..., num_steps``.

    Raises:
        ValueError: If ``A`` is not symmetric, ``num_steps < 1`` or ``start`` is zero or misshaped.
    """
    operator = require_symmetric(A, "lanczos")
    n = operator.shape[0]
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    num_steps = min(num_steps, n)
    basis = torch.empty(0, n, dtype=operator.dtype, device=operator.device)
    q = _unit_random(operator, generator, basis) if start is None else _check_start(start, n)
    q = q.to(operator.device, operator.dtype)
    alphas, betas, scale = [], [], 0.0
    for step in range(1, num_steps + 1):
        basis = torch.cat([basis, q[None]])  # [step, n]
        w = operator @ q
        alpha = torch.dot(q, w).item()
        w = orthogonalize(w, basis)  # removes alpha q and beta q_prev too, to rounding
        beta = w.norm().item()
        alphas.append(alpha)
        betas.append(beta)
        scale = max(scale, abs(alpha), beta)
        is_breakdown = beta <= 100 * torch.finfo(operator.dtype).eps * scale
        if is_breakdown:
            betas[-1] = 0.0
        yield LanczosState(step, _f64(alphas), _f64(betas), basis, is_breakdown)
        if step < num_steps:
            q = _unit_random(operator, generator, basis) if is_breakdown else w / beta


def _check_start(start: Tensor, n: int) -> Tensor:
    if start.shape != (n,) or not start.norm() > 0:
        raise ValueError(
            f"start must be a non-zero vector of shape [{n}], got {tuple(start.shape)}"
        )
    return start / start.norm()


def _f64(values: list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


def ritz(state: LanczosState, k: int, which: str) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` wanted Ritz values of a Lanczos state, their ``T_m`` eigenvectors and residuals.

    Args:
        state: Output of :func:`lanczos`.
        k: Number of pairs (at most ``state.num_steps``).
        which: ``"LA"`` (largest algebraic), ``"SA"`` (smallest) or ``"LM"`` (largest magnitude).

    Returns:
        ``theta [k]``, ``S [m, k]`` (float64) and relative residuals
        ``beta_m |S[m-1]| / max(|theta|, eps ||T_m||)`` ``[k]``.
    """
    theta, vectors = torch.linalg.eigh(state.tridiagonal())
    order = select(theta, which, k)
    theta, vectors = theta[order], vectors[:, order]
    floor = torch.finfo(state.basis.dtype).eps * theta.abs().max().clamp_min(1e-300)
    residuals = state.betas[-1] * vectors[-1].abs() / theta.abs().clamp_min(floor)
    return theta, vectors, residuals


def _check_top_args(n: int, k: int, which: str, tol: float, max_steps: int, min_steps: int):
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if not k <= max_steps:
        raise ValueError(f"max_steps must be >= k={k}, got {max_steps}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"min_steps must be in [1, max_steps={max_steps}], got {min_steps}")


def top_eigenvalues(
    A: LinearOperator | Tensor,
    k: int,
    which: str = "LA",
    tol: float = 1e-3,
    max_steps: int | None = None,
    min_steps: int | None = None,
    generator: torch.Generator | None = None,
    return_vectors: bool = True,
    block_size: int | None = None,
) -> EigenResult:
    """The ``k`` extreme eigenpairs of a symmetric operator by Lanczos with adaptive Krylov size.

    Stops at the first step ``m >= min_steps`` at which all ``k`` wanted Ritz pairs satisfy
    ``||A v - theta v|| <= tol |theta|``. Unconverged pairs are flagged and a warning is issued.

    Args:
        A: Symmetric operator or ``[n, n]`` tensor.
        k: Number of eigenpairs.
        which: ``"LA"`` largest algebraic, ``"SA"`` smallest algebraic, ``"LM"`` largest magnitude.
        tol: Relative residual tolerance.
        max_steps: Largest Krylov dimension (default ``min(n, max(100, 20 k))``).
        min_steps: First Krylov dimension tested (default ``min(n, 2 k + 5)``); guards against a
            Ritz value converging to a neighbour of the wanted eigenvalue early on.
        generator: CPU generator for the start vector.
        return_vectors: Also return the Ritz vectors ``[n, k]``.
        block_size: ``1``: single-vector Lanczos; ``b > 1``: block Lanczos with ``b`` products
            per step (:mod:`landscape.block`), faster where the operator's batched products are;
            ``None``: the operator's ``block_size`` (1 unless it batches faster).

    Returns:
        :class:`~landscape.results.EigenResult`.

    Raises:
        ValueError: On invalid arguments or a non-symmetric operator.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
        >>> result = top_eigenvalues(A, 2, tol=1e-10, generator=torch.Generator().manual_seed(0))
        >>> [round(value, 8) for value in result.eigenvalues.tolist()], result.all_converged
        ([100.0, 99.0], True)
    """
    operator = require_symmetric(A, "top_eigenvalues")
    n = operator.shape[0]
    max_steps = min(n, max(100, 20 * k)) if max_steps is None else min(max_steps, n)
    min_steps = min(n, 2 * k + 5, max_steps) if min_steps is None else min_steps
    _check_top_args(n, k, which, tol, max_steps, min_steps)
    block_size = operator.block_size if block_size is None else block_size
    if not block_size >= 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if block_size > 1:
        return block_top_eigenvalues(
            operator, k, which, tol, max_steps, min_steps, generator, return_vectors, block_size
        )
    return _lanczos_top(operator, k, which, tol, max_steps, min_steps, generator, return_vectors)


def _lanczos_top(
    operator: LinearOperator,
    k: int,
    which: str,
    tol: float,
    max_steps: int,
    min_steps: int,
    generator: torch.Generator | None,
    return_vectors: bool,
) -> EigenResult:
    """Single-vector Lanczos for :func:`top_eigenvalues` (arguments checked)."""
    start = operator.num_matvecs
    for state in lanczos(operator, max_steps, generator):
        if state.num_steps < max(min_steps, k):
            continue
        theta, vectors, residuals = ritz(state, k, which)
        exact = state.num_steps == operator.shape[0]
        if exact or (not state.is_breakdown and bool((residuals <= tol).all())):
            break
    warn_unconverged(residuals, tol, max_steps, stacklevel=3)
    eigenvectors = None
    if return_vectors:
        eigenvectors = state.basis.T @ vectors.to(state.basis.dtype)  # [n, k]
    return EigenResult(
        eigenvalues=theta,
        eigenvectors=eigenvectors,
        residuals=residuals,
        converged=residuals <= tol,
        num_matvecs=operator.num_matvecs - start,
        num_steps=state.num_steps,
        which=which,
        tol=tol,
    )

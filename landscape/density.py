"""Eigenvalue spectral density by stochastic Lanczos quadrature (SLQ).

For a unit random probe ``v``, ``v^T f(A) v ~ sum_i w_i f(theta_i)`` where ``theta_i`` are the
eigenvalues of the Lanczos tridiagonal ``T_m`` started at ``v`` and ``w_i`` the squared first
components of its eigenvectors (Golub & Meurant 1994; Ubaru, Chen & Saad, "Fast estimation of
tr(f(A)) via stochastic Lanczos quadrature", SIMAX 2017). Averaging over probes and replacing each
node by a Gaussian of width ``sigma`` gives the smoothed density
``phi(t) = (1/R) sum_r sum_i w_ri N(t; theta_ri, sigma^2)`` of Ghorbani, Krishnan & Xiao,
"An investigation into neural net optimization via Hessian eigenvalue density", ICML 2019
(and Papyan 2019/2020). Each row of weights sums to one, so the density integrates to one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from landscape.block import orthogonalize
from landscape.lanczos import _unit_random
from landscape.operators import LinearOperator, random_vectors, require_symmetric
from landscape.results import DensityResult

__all__ = ["slq_nodes", "spectral_density", "gaussian_density"]


def slq_nodes(
    A: LinearOperator | Tensor,
    num_steps: int,
    num_repeats: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Quadrature nodes and weights from ``num_repeats`` Lanczos runs of ``num_steps`` each.

    The runs are independent recurrences advanced together, one block product per step.

    Args:
        A: Symmetric operator or ``[n, n]`` tensor.
        num_steps: Lanczos steps per probe (capped at ``n``).
        num_repeats: Number of Rademacher probes.
        generator: CPU generator.

    Returns:
        ``nodes [R, m]`` and ``weights [R, m]`` (float64; rows of ``weights`` sum to 1).

    Raises:
        ValueError: If ``num_steps < 1`` or ``num_repeats < 1`` or ``A`` is not symmetric.
    """
    operator = require_symmetric(A, "spectral_density")
    if num_repeats < 1:
        raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    n = operator.shape[0]
    starts = [
        random_vectors(n, None, "rademacher", generator, operator) for _ in range(num_repeats)
    ]
    alphas, betas = _lanczos_block(operator, torch.stack(starts, dim=1), num_steps, generator)
    nodes, weights = [], []
    for alpha, beta in zip(alphas, betas):
        off = beta[:-1]
        theta, vectors = torch.linalg.eigh(
            torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)
        )
        nodes.append(theta)
        weights.append(vectors[0] ** 2)
    return torch.stack(nodes), torch.stack(weights)


def _lanczos_block(
    operator: LinearOperator, starts: Tensor, num_steps: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Independent Lanczos recurrences from the columns of ``starts [n, R]``, advanced together.

    Each step is one block product ``A [q_1 ... q_R]``; each recurrence does exactly what
    :func:`landscape.lanczos.lanczos` does (full reorthogonalization against its own basis, a
    fresh random vector after a breakdown).

    Returns:
        ``alphas [R, m]`` and ``betas [R, m]`` (float64), ``m = min(num_steps, n)``.
    """
    n, num_repeats = starts.shape
    num_steps = min(num_steps, n)
    Q = (starts / starts.norm(dim=0)).T.contiguous()  # [R, n]: contiguous rows, as in lanczos
    bases = [Q.new_empty(0, n) for _ in range(num_repeats)]
    alphas, betas = torch.zeros(2, num_repeats, num_steps, dtype=torch.float64)
    scales = [0.0] * num_repeats
    for step in range(num_steps):
        bases = [torch.cat([basis, q[None]]) for basis, q in zip(bases, Q)]
        W = (operator @ Q.T).T.contiguous()  # [R, n]: one batched pass for all probes
        rows = []
        for r, (basis, q, w) in enumerate(zip(bases, Q, W)):
            alpha = torch.dot(q, w).item()
            w = orthogonalize(w, basis)
            beta = w.norm().item()
            scales[r] = max(scales[r], abs(alpha), beta)
            is_breakdown = beta <= 100 * torch.finfo(operator.dtype).eps * scales[r]
            alphas[r, step], betas[r, step] = alpha, 0.0 if is_breakdown else beta
            if step + 1 < num_steps:
                rows.append(_unit_random(operator, generator, basis) if is_breakdown else w / beta)
        Q = torch.stack(rows) if rows else Q
    return alphas, betas


def gaussian_density(nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float) -> Tensor:
    """``(1/R) sum_r sum_i w_ri N(grid; nodes_ri, sigma^2)`` on a grid, ``[G]``.

    Raises:
        ValueError: If ``sigma <= 0``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    nodes, weights = nodes.reshape(-1, 1), weights.reshape(-1, 1) / nodes.shape[0]
    kernel = torch.exp(-0.5 * ((grid[None] - nodes) / sigma) ** 2) / (
        sigma * math.sqrt(2 * math.pi)
    )
    return (weights * kernel).sum(0)


def spectral_density(
    A: LinearOperator | Tensor,
    num_steps: int = 80,
    num_repeats: int = 10,
    generator: torch.Generator | None = None,
    sigma: float | None = None,
    num_points: int = 1024,
) -> DensityResult:
    """Smoothed spectral density of a symmetric operator by SLQ.

    Args:
        A: Symmetric operator or ``[n, n]`` tensor.
        num_steps: Lanczos steps per probe.
        num_repeats: Number of probes; ``num_steps * num_repeats`` products in total.
        generator: CPU generator.
        sigma: Width of the Gaussian kernel (default: node range / ``num_steps``).
        num_points: Grid size; the grid covers the nodes with a margin of 10 % of the range
            plus ``5 sigma`` on each side, so the density integrates to 1 up to discretization.

    Returns:
        :class:`~landscape.results.DensityResult`.

    Raises:
        ValueError: On invalid arguments, or a grid coarser than ``sigma / 2``.

    Example:
        >>> A = torch.diag(torch.linspace(-1.0, 1.0, 50, dtype=torch.float64))
        >>> result = spectral_density(A, 20, 2, torch.Generator().manual_seed(0))
        >>> round(torch.trapezoid(result.density, result.grid).item(), 4)
        1.0
    """
    nodes, weights = slq_nodes(A, num_steps, num_repeats, generator)
    low, high = nodes.min().item(), nodes.max().item()
    spread = max(high - low, 1e-12 * max(1.0, abs(high)))
    sigma = spread / nodes.shape[1] if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    margin = 0.1 * spread + 5 * sigma
    grid = torch.linspace(low - margin, high + margin, num_points, dtype=torch.float64)
    if num_points < 2 or (grid[1] - grid[0]).item() > sigma / 2:
        raise ValueError(
            f"num_points={num_points} gives a grid coarser than sigma/2 = {sigma / 2:.3g}; "
            "increase num_points or sigma"
        )
    density = gaussian_density(nodes, weights, grid, sigma)
    return DensityResult(grid, density, nodes, weights, sigma, nodes.numel())  # 1 product/node

"""Result dataclasses that report their own quality.

Every estimator returns the value with its error bar (``stderr``), residuals and ``converged``
flags, and the number of operator products it used (``num_matvecs``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from toolkit.io import to_plain

__all__ = [
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "AsymmetryResult",
]


@dataclass
class EigenResult:
    """Ritz pairs from Lanczos.

    Attributes:
        eigenvalues: ``[k]``, ordered as requested (``LA``: descending, ``SA``: ascending,
            ``LM``: by descending magnitude).
        eigenvectors: ``[n, k]`` unit Ritz vectors, or ``None``.
        residuals: ``[k]`` relative residuals ``||A v - theta v|| / |theta|``.
        converged: ``[k]`` bool, ``residuals <= tol``.
        num_matvecs: Operator products used.
        num_steps: Krylov dimension reached.
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        tol: Relative residual tolerance.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor | None
    residuals: Tensor
    converged: Tensor
    num_matvecs: int
    num_steps: int
    which: str
    tol: float

    @property
    def all_converged(self) -> bool:
        """True when every requested pair met the tolerance."""
        return bool(self.converged.all())

    def to_dict(self) -> dict[str, Any]:
        """Plain types, without the eigenvectors."""
        return to_plain({k: v for k, v in vars(self).items() if k != "eigenvectors"})


@dataclass
class TraceResult:
    """Stochastic trace estimate ``mean +- stderr`` (one standard error of the random part).

    Attributes:
        mean: The estimate of ``tr(A)``.
        stderr: Standard error of the estimate over the random probes.
        num_matvecs: Operator products used.
        method: ``"hutchinson"`` or ``"hutch++"``.
    """

    mean: float
    stderr: float
    num_matvecs: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain types."""
        return to_plain(dataclasses.asdict(self))


@dataclass
class DensityResult:
    """Spectral density from stochastic Lanczos quadrature.

    Attributes:
        grid: ``[G]`` eigenvalue grid.
        density: ``[G]`` Gaussian-smoothed density on ``grid``; integrates to 1.
        nodes: ``[R, m]`` Ritz values of each of the ``R`` probes.
        weights: ``[R, m]`` quadrature weights (each row sums to 1).
        sigma: Standard deviation of the Gaussian smoothing kernel.
        num_matvecs: Operator products used.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    sigma: float
    num_matvecs: int

    def to_dict(self) -> dict[str, Any]:
        """Plain types (the arrays as lists)."""
        return to_plain(dataclasses.asdict(self))


@dataclass
class AsymmetryResult:
    """Estimated asymmetry ``||A - A^T||_F / ||A||_F`` and the squared norms behind it.

    Attributes:
        relative: ``sqrt(antisymmetric_fro_sq / fro_sq)``.
        antisymmetric_fro_sq: Estimate of ``||A - A^T||_F^2``.
        antisymmetric_fro_sq_stderr: Its standard error.
        fro_sq: Estimate of ``||A||_F^2``.
        fro_sq_stderr: Its standard error.
        num_matvecs: Operator products used.
    """

    relative: float
    antisymmetric_fro_sq: float
    antisymmetric_fro_sq_stderr: float
    fro_sq: float
    fro_sq_stderr: float
    num_matvecs: int

    def to_dict(self) -> dict[str, Any]:
        """Plain types."""
        return to_plain(dataclasses.asdict(self))

"""Result dataclasses that report their own quality, and atomic JSON / ``.npz`` files.

Every estimator returns the value with its error bar (``stderr``), residuals and ``converged``
flags, and the number of operator products it used (``num_matvecs``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape.io import atomic_write

__all__ = [
    "EigenResult",
    "TraceResult",
    "DensityResult",
    "AsymmetryResult",
    "to_plain",
    "save_json",
    "load_json",
    "save_npz",
    "atomic_write",
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


def to_plain(value: Any) -> Any:
    """Recursively convert tensors, arrays, dataclasses and paths to JSON types; NaN -> None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    return value


def save_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` (converted by :func:`to_plain`) as JSON, atomically (temp + rename).

    Returns:
        The path written.
    """
    text = json.dumps(to_plain(payload), indent=2, allow_nan=False) + "\n"
    return atomic_write(Path(path), lambda file: file.write(text.encode()))


def load_json(path: str | Path) -> Any:
    """Read a JSON result file."""
    return json.loads(Path(path).read_text())


def save_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Write arrays to a compressed ``.npz``, atomically.

    Returns:
        The path written.
    """
    plain = {key: np.asarray(to_numpy(value)) for key, value in arrays.items()}
    return atomic_write(Path(path), lambda file: np.savez_compressed(file, **plain))


def to_numpy(value: Any) -> Any:
    """A tensor as a NumPy array; other values unchanged."""
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else value

"""Lanczos and top_eigenvalues against torch.linalg.eigvalsh on planted spectra (float64)."""

from __future__ import annotations

import pytest
import torch

from landscape import DenseOperator, lanczos, top_eigenvalues

from .conftest import planted


@pytest.fixture
def spectrum() -> torch.Tensor:
    """200 eigenvalues: a bulk in [-1, 1] plus outliers on both sides, like a Hessian."""
    bulk = torch.linspace(-1, 1, 190, dtype=torch.float64)
    outliers = torch.tensor([50.0, 30.0, 20.0, 12.0, 8.0, 5.0, -6.0, -4.0, -3.0, -2.5])
    return torch.cat([bulk, outliers.double()])


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_top_eigenvalues_match_eigvalsh(spectrum, generator, which):
    A = planted(spectrum, generator)
    result = top_eigenvalues(A, 4, which=which, tol=1e-8, generator=generator)
    exact = torch.linalg.eigvalsh(A)
    order = {"LA": exact.flip(0), "SA": exact, "LM": exact[exact.abs().argsort(descending=True)]}
    torch.testing.assert_close(result.eigenvalues, order[which][:4], rtol=1e-10, atol=0)
    assert result.all_converged and result.num_matvecs == result.num_steps < 200


def test_residuals_are_true_residuals(spectrum, generator):
    A = planted(spectrum, generator)
    result = top_eigenvalues(A, 3, tol=1e-3, generator=generator)
    V, theta = result.eigenvectors, result.eigenvalues
    true = (A @ V - V * theta).norm(dim=0) / theta.abs()  # [k]
    torch.testing.assert_close(result.residuals, true, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(V.T @ V, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-10)
    assert (result.residuals <= 1e-3).all()


def test_stops_early_at_loose_tolerance(spectrum, generator):
    A = DenseOperator(planted(spectrum, generator))
    loose = top_eigenvalues(A, 2, tol=1e-2, generator=torch.Generator().manual_seed(0))
    tight = top_eigenvalues(A, 2, tol=1e-10, generator=torch.Generator().manual_seed(0))
    assert loose.num_matvecs < tight.num_matvecs
    assert A.num_matvecs == loose.num_matvecs + tight.num_matvecs


def test_unconverged_pairs_are_flagged_and_warned(spectrum, generator):
    A = planted(spectrum, generator)
    with pytest.warns(RuntimeWarning, match="did not reach the relative residual"):
        result = top_eigenvalues(A, 5, tol=1e-12, max_steps=10, generator=generator)
    assert not result.all_converged and result.num_steps == 10


def test_repeated_eigenvalues_found_after_breakdown(generator):
    A = torch.diag(torch.tensor([5.0, 5.0, 5.0, 3.0, 1.0, 1.0], dtype=torch.float64))
    result = top_eigenvalues(A, 4, tol=1e-10, generator=generator)
    torch.testing.assert_close(result.eigenvalues, torch.tensor([5.0, 5, 5, 3]).double())


def test_lanczos_basis_is_orthonormal_and_tridiagonalizes(spectrum, generator):
    A = planted(spectrum, generator)
    *_, state = lanczos(A, 60, generator)
    Q = state.basis  # [m, n]
    torch.testing.assert_close(Q @ Q.T, torch.eye(60, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(Q @ A @ Q.T, state.tridiagonal(), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k must be in"),
        (dict(k=201), "k must be in"),
        (dict(which="BE"), "which must be one of"),
        (dict(tol=0.0), "tol must be > 0"),
        (dict(max_steps=2), "max_steps must be >= k"),
        (dict(min_steps=0), "min_steps must be in"),
    ],
)
def test_argument_errors(spectrum, generator, kwargs, match):
    A = planted(spectrum, generator)
    with pytest.raises(ValueError, match=match):
        top_eigenvalues(A, **{"k": 3, **kwargs})


def test_refuses_non_symmetric_and_bad_steps(generator):
    A = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs a symmetric operator"):
        top_eigenvalues(A, 1)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        next(lanczos(A + A.T, 0))
    with pytest.raises(ValueError, match="start must be a non-zero vector"):
        next(lanczos(A + A.T, 3, start=torch.zeros(5, dtype=torch.float64)))

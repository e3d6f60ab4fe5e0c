"""Operators: dense wrapping, Hessian and surrogate-gradient-field Jacobian, asymmetry estimate."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import (
    DenseOperator,
    HessianOperator,
    Objective,
    SGFieldJacobianOperator,
    estimate_asymmetry,
    estimate_trace,
    random_vectors,
    spectral_density,
    top_eigenvalues,
)

from .test_objective import assert_unchanged, dense_hessian, snapshot


def test_dense_operator_products_and_counts(generator):
    matrix = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    operator = DenseOperator(matrix)
    block = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(operator @ block, matrix @ block)
    torch.testing.assert_close(operator @ block[:, 0], matrix @ block[:, 0])
    assert operator.num_matvecs == 4 and operator.shape == (6, 6)
    assert not operator.is_symmetric and DenseOperator(matrix + matrix.T).is_symmetric


def test_operator_errors(generator):
    with pytest.raises(ValueError, match="matrix must be square"):
        DenseOperator(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="matrix must be floating point"):
        DenseOperator(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expected a vector"):
        DenseOperator(torch.eye(3)) @ torch.zeros(4)
    with pytest.raises(ValueError, match="kind must be"):
        random_vectors(3, None, "uniform", generator, DenseOperator(torch.eye(3)))
    with pytest.raises(ValueError, match="num_probes must be >= 2"):
        estimate_asymmetry(torch.eye(3), 1)


def test_asymmetry_estimate_on_dense_matrices(generator):
    symmetric = torch.randn(40, 40, generator=generator, dtype=torch.float64)
    symmetric = symmetric + symmetric.T
    assert estimate_asymmetry(symmetric, 5, generator).relative < 1e-12
    A = symmetric + 0.5 * torch.randn(40, 40, generator=generator, dtype=torch.float64)
    anti, full = ((A - A.T).norm() ** 2).item(), (A.norm() ** 2).item()
    result = estimate_asymmetry(A, 400, generator)
    # Each squared norm lies within 4 of its reported standard errors (about 8 % here).
    assert abs(result.antisymmetric_fro_sq - anti) < 4 * result.antisymmetric_fro_sq_stderr
    assert abs(result.fro_sq - full) < 4 * result.fro_sq_stderr
    assert result.relative == pytest.approx((anti / full) ** 0.5, rel=0.25)
    assert result.num_matvecs == 800


def test_hessian_operator_spectrum_matches_dense(tiny_snn, snn_batches, snn_loss, generator):
    objective = Objective(tiny_snn, snn_loss, snn_batches)
    hessian = dense_hessian(tiny_snn, snn_loss, snn_batches)
    exact = torch.linalg.eigvalsh(hessian)
    operator = HessianOperator(objective)
    top = top_eigenvalues(operator, 3, "LA", tol=1e-6, generator=generator)
    torch.testing.assert_close(top.eigenvalues, exact.flip(0)[:3], rtol=1e-6, atol=0)
    bottom = top_eigenvalues(operator, 2, "SA", tol=1e-6, generator=generator)
    torch.testing.assert_close(bottom.eigenvalues, exact[:2], rtol=1e-6, atol=0)
    trace = estimate_trace(operator, 30, "hutch++", generator)
    assert abs(trace.mean - torch.trace(hessian).item()) <= 3 * trace.stderr
    density = spectral_density(operator, 20, 2, generator)
    assert torch.trapezoid(density.density, density.grid).item() == pytest.approx(1, abs=1e-6)
    uncached = HessianOperator(objective, use_cached_graph=False)
    v = torch.randn(objective.num_params, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(uncached @ v, operator @ v, rtol=1e-12, atol=1e-14)


def test_sg_jacobian_equals_hessian_on_smooth_ann(tanh_mlp, mlp_batches, generator):
    objective = Objective(tanh_mlp, nn.functional.cross_entropy, mlp_batches)
    jacobian = SGFieldJacobianOperator(objective)
    hessian = HessianOperator(objective)
    v = torch.randn(objective.num_params, generator=generator, dtype=torch.float64)
    # Tolerance: central differences with step eps^(1/3) have relative error ~1e-10 here.
    torch.testing.assert_close(jacobian @ v, hessian @ v, rtol=1e-7, atol=1e-9)
    assert estimate_asymmetry(jacobian, 5, generator).relative < 1e-6
    assert not jacobian.is_symmetric and jacobian.curvature == "sg_field_jacobian_fd"


def test_sg_jacobian_is_asymmetric_on_snn(tiny_snn, snn_batches, snn_loss, generator):
    objective = Objective(tiny_snn, snn_loss, snn_batches)
    jacobian = SGFieldJacobianOperator(objective)
    result = estimate_asymmetry(jacobian, 20, generator)
    assert result.relative > 0.1  # forward Heaviside vs backward surrogate
    with pytest.raises(ValueError, match="needs a symmetric operator.*sg_field_jacobian_fd"):
        top_eigenvalues(jacobian, 1)
    with pytest.raises(ValueError, match="step must be > 0"):
        SGFieldJacobianOperator(objective, step=0.0)


def test_operators_leave_model_unchanged(tiny_snn, snn_batches, snn_loss, generator):
    before = snapshot(tiny_snn)
    objective = Objective(tiny_snn, snn_loss, snn_batches)
    top_eigenvalues(HessianOperator(objective), 2, generator=generator)
    estimate_asymmetry(SGFieldJacobianOperator(objective), 2, generator)
    assert_unchanged(tiny_snn, before)

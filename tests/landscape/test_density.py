"""Stochastic Lanczos quadrature: a probability density peaked at the planted eigenvalues."""

from __future__ import annotations

import pytest
import torch

from landscape import gaussian_density, slq_nodes, spectral_density

from .conftest import planted


@pytest.fixture
def two_clusters(generator) -> torch.Tensor:
    """150 eigenvalues near 0 and 50 near 10: density mass 0.75 and 0.25."""
    values = torch.cat(
        [
            0.01 * torch.randn(150, generator=generator),
            10 + 0.01 * torch.randn(50, generator=generator),
        ]
    )
    return planted(values.double(), generator)


def test_density_integrates_to_one_and_peaks_at_clusters(two_clusters, generator):
    result = spectral_density(two_clusters, 30, 8, generator, sigma=0.2)
    grid, density = result.grid, result.density
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-6)
    near = lambda center: (grid - center).abs() < 1.0  # noqa: E731
    mass = [torch.trapezoid(density * near(c), grid).item() for c in (0.0, 10.0)]
    # Tolerance: 8 Rademacher probes estimate the 0.75 / 0.25 split to about +-0.05.
    assert mass == pytest.approx([0.75, 0.25], abs=0.08)
    assert grid[density.argmax()].abs() < 0.5
    assert result.num_matvecs == 8 * 30


def test_weights_sum_to_one_and_nodes_are_in_range(two_clusters, generator):
    nodes, weights = slq_nodes(two_clusters, 15, 3, generator)
    assert nodes.shape == weights.shape == (3, 15)
    torch.testing.assert_close(weights.sum(1), torch.ones(3, dtype=torch.float64))
    assert nodes.min() > -0.1 and nodes.max() < 10.1


def test_quadrature_reproduces_trace_of_polynomial(generator):
    # Gauss quadrature with m nodes is exact for polynomials of degree <= 2m - 1: with
    # Rademacher probes, n * E[sum_i w_i theta_i^2] = tr(A^2).
    A = planted(torch.linspace(-2, 3, 40, dtype=torch.float64), generator)
    nodes, weights = slq_nodes(A, 5, 400, generator)
    estimate = 40 * (weights * nodes**2).sum(1).mean()
    assert estimate.item() == pytest.approx(torch.trace(A @ A).item(), rel=0.05)


def test_errors(two_clusters, generator):
    with pytest.raises(ValueError, match="num_repeats must be >= 1"):
        spectral_density(two_clusters, 10, 0, generator)
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        spectral_density(two_clusters, 0, 1, generator)
    with pytest.raises(ValueError, match="coarser than sigma/2"):
        spectral_density(two_clusters, 10, 1, generator, sigma=1e-4, num_points=100)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_density(torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="needs a symmetric operator"):
        spectral_density(torch.triu(torch.ones(4, 4, dtype=torch.float64)), 2, 1, generator)

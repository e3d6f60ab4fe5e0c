"""Hutchinson and Hutch++: unbiasedness, calibrated error bars, exactness where expected."""

from __future__ import annotations

import pytest
import torch

from landscape import estimate_trace, hutchinson_trace, hutchpp_trace

from .conftest import planted


@pytest.fixture
def decaying(generator) -> torch.Tensor:
    """PSD 100 x 100 matrix with eigenvalues 1/i (trace ~ 5.19)."""
    return planted(1.0 / torch.arange(1, 101, dtype=torch.float64), generator)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_error_bars_are_calibrated(decaying, method):
    # Over 200 seeds the z-scores (estimate - trace) / stderr should have mean ~0 and std ~1.
    exact = torch.trace(decaying).item()
    z = torch.tensor(
        [
            (lambda r: (r.mean - exact) / r.stderr)(
                estimate_trace(decaying, 30, method, torch.Generator().manual_seed(seed))
            )
            for seed in range(200)
        ]
    )
    # Tolerances: 200 draws give a standard error of ~0.07 on the mean; the std of a t-like
    # statistic with 10-28 degrees of freedom is ~1.05-1.1.
    assert abs(z.mean()) < 0.3 and 0.75 < z.std() < 1.35


def test_average_over_seeds_converges(decaying):
    exact = torch.trace(decaying).item()
    means = [hutchpp_trace(decaying, 30, torch.Generator().manual_seed(s)).mean for s in range(100)]
    assert abs(sum(means) / 100 - exact) < 0.01 * exact


def test_hutchpp_beats_hutchinson_on_decaying_spectrum(decaying):
    exact = torch.trace(decaying).item()

    def rms(estimator):
        errors = [
            estimator(decaying, 60, torch.Generator().manual_seed(s)).mean - exact
            for s in range(40)
        ]
        return (sum(e * e for e in errors) / len(errors)) ** 0.5

    assert rms(hutchpp_trace) < 0.5 * rms(hutchinson_trace)


def test_exact_cases(generator):
    diagonal = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    result = hutchinson_trace(diagonal, 4, generator)  # Rademacher: g^T D g = tr(D)
    assert result.mean == pytest.approx(210.0, rel=1e-12) and result.stderr == 0.0
    low_rank = planted(torch.tensor([3.0, 2.0, 1.0] + [0.0] * 17), generator)
    result = hutchpp_trace(low_rank, 12, generator)  # the sketch captures the whole range
    assert result.mean == pytest.approx(6.0, rel=1e-10) and result.num_matvecs == 12


def test_non_symmetric_trace(generator):
    A = torch.randn(30, 30, generator=generator, dtype=torch.float64) + 5 * torch.eye(30)
    result = hutchpp_trace(A, 90, generator)
    assert abs(result.mean - torch.trace(A).item()) <= 4 * result.stderr + 1e-9


def test_errors(decaying, generator):
    with pytest.raises(ValueError, match="num_matvecs must be >= 2"):
        hutchinson_trace(decaying, 1, generator)
    with pytest.raises(ValueError, match="num_matvecs must be >= 4 for hutch"):
        hutchpp_trace(decaying, 3, generator)
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_trace(decaying, 10, "xtrace++", generator)
    with pytest.raises(ValueError, match="A must be a LinearOperator or a Tensor"):
        hutchinson_trace([[1.0]], 2, generator)

"""XTrace and XNysTrace: exact below the sketch rank, unbiased, calibrated, beat Hutch++."""

from __future__ import annotations

import pytest
import torch

from landscape import (
    TRACE_METHODS,
    DenseOperator,
    HessianOperator,
    LinearOperator,
    estimate_trace,
    hutchpp_trace,
    xnystrace_trace,
    xtrace_trace,
)
from tests.helpers import dense_hessian, objective, save_mlp

from .conftest import planted

ESTIMATORS = [xtrace_trace, xnystrace_trace]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spectrum(power: float) -> torch.Tensor:
    """PSD 100 x 100 matrix with eigenvalues ``i^-power`` (same eigenvectors for every power)."""
    return planted(torch.arange(1, 101, dtype=torch.float64) ** -power, _seeded(0))


class Counting(LinearOperator):
    """A dense matrix that records the width of every block product and refuses single ones."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device, True)
        self.matrix, self.widths = matrix, []

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise AssertionError("single products: expected block products only")

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        self.widths.append(V.shape[1])
        return self.matrix @ V


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_exact_below_the_sketch_rank(estimator, generator):
    # Rank 3 < 12 / 2: every leave-one-out sketch holds the whole range, the deflated part is 0.
    low_rank = planted(torch.tensor([3.0, 2.0, 1.0] + [0.0] * 17), generator)
    # A diagonal one gives a sketch of exact rank 3 (exact zeros in R, not rounding noise).
    diagonal = torch.diag(torch.tensor([3.0, 2.0, 1.0] + [0.0] * 17, dtype=torch.float64))
    for matrix in (low_rank, diagonal):
        for seed in range(3):
            result = estimator(matrix, 12, _seeded(seed))
            assert result.mean == pytest.approx(6.0, rel=1e-10)
            assert result.stderr < 1e-10 and result.num_matvecs == 12
    zero = estimator(torch.zeros(20, 20, dtype=torch.float64), 12, generator)
    assert zero.mean == pytest.approx(0.0, abs=1e-12) and zero.stderr < 1e-12


def test_xtrace_exact_for_a_non_symmetric_low_rank_matrix(generator):
    U, V = torch.randn(2, 20, 3, generator=generator, dtype=torch.float64)
    A = U @ V.T
    result = xtrace_trace(A, 12, generator)
    assert result.mean == pytest.approx(torch.trace(A).item(), rel=1e-10)


def test_xtrace_non_symmetric(generator):
    A = torch.randn(30, 30, generator=generator, dtype=torch.float64) + 5 * torch.eye(30)
    result = xtrace_trace(A, 40, generator)
    assert abs(result.mean - torch.trace(A).item()) <= 4 * result.stderr


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_unbiased_with_calibrated_error_bars(estimator):
    A = _spectrum(1.0)  # as in test_trace.py: trace ~ 5.19
    exact = torch.trace(A).item()
    results = [estimator(A, 30, _seeded(seed)) for seed in range(200)]
    means = torch.tensor([r.mean for r in results], dtype=torch.float64)
    stderrs = torch.tensor([r.stderr for r in results], dtype=torch.float64)
    spread = means.std().item()
    assert abs(means.mean().item() - exact) < 3 * spread / 200**0.5
    # Measured (400 seeds): reported / empirical = 0.74 (xtrace), 0.68 (xnystrace).
    reported = stderrs.pow(2).mean().sqrt().item()
    assert 0.5 < reported / spread < 2.0


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fewer_errors_than_hutchpp(estimator):
    # Eigenvalues 1/i^2: measured RMS error ratios to Hutch++ at m = 30 are 0.57 (xtrace) and
    # 0.45 (xnystrace). The slower 1/i decay gives only 0.84 and 0.64: the sketch gains less.
    A = _spectrum(2.0)
    exact = torch.trace(A).item()

    def rms(trace_estimator) -> float:
        errors = [trace_estimator(A, 30, _seeded(seed)).mean - exact for seed in range(100)]
        return (sum(e * e for e in errors) / len(errors)) ** 0.5

    assert rms(estimator) < 0.8 * rms(hutchpp_trace)


@pytest.mark.parametrize("method", ["xtrace", "xnystrace"])
def test_tensor_operator_and_dispatch_agree_with_block_products(method):
    A = _spectrum(1.0)
    estimator = {"xtrace": xtrace_trace, "xnystrace": xnystrace_trace}[method]
    assert method in TRACE_METHODS
    dense = estimator(A, 31, _seeded(3))
    assert estimator(DenseOperator(A), 31, _seeded(3)) == dense
    assert estimate_trace(A, 31, method, _seeded(3)) == dense
    counting = Counting(A)
    assert estimator(counting, 31, _seeded(3)) == dense
    # xtrace: A Omega and A Q with 15 columns each (an odd budget leaves one product unused);
    # xnystrace: one block of all 31 test vectors.
    widths = [15, 15] if method == "xtrace" else [31]
    assert counting.widths == widths
    assert dense.num_matvecs == counting.num_matvecs == sum(widths)
    assert dense.method == method


def test_float32_operator():
    A = _spectrum(2.0)
    for estimator in ESTIMATORS:
        single = estimator(A.float(), 30, _seeded(0))
        double = estimator(A, 30, _seeded(0))
        assert single.mean == pytest.approx(double.mean, rel=1e-5)  # measured <= 1.1e-6


def test_errors(generator):
    A = _spectrum(1.0)
    with pytest.raises(ValueError, match="num_matvecs must be >= 4 for xtrace"):
        xtrace_trace(A, 3, generator)
    with pytest.raises(ValueError, match="num_matvecs must be >= 2 for xnystrace"):
        xnystrace_trace(A, 1, generator)
    with pytest.raises(ValueError, match="num_matvecs must be <= 201 for xtrace"):
        estimate_trace(A, 202, "xtrace", generator)
    with pytest.raises(ValueError, match="num_matvecs must be <= 100 for xnystrace"):
        estimate_trace(A, 101, "xnystrace", generator)
    non_symmetric = DenseOperator(A, is_symmetric=False)
    with pytest.raises(ValueError, match="xnystrace needs a symmetric operator"):
        xnystrace_trace(non_symmetric, 10, generator)
    with pytest.raises(ValueError, match="xnystrace needs a positive semi-definite operator"):
        xnystrace_trace(-A, 10, generator)
    with pytest.raises(ValueError, match="A must be a LinearOperator or a Tensor"):
        xtrace_trace([[1.0]], 4, generator)
    with pytest.raises(ValueError, match="method must be one of"):
        estimate_trace(A, 10, "xtrace++", generator)


def test_snn_hessian_trace(tmp_path):
    found = objective(save_mlp(tmp_path / "last.pt"))  # 310-parameter spiking MLP, float64
    exact = torch.trace(dense_hessian(found)).item()
    operator = HessianOperator(found)
    result = estimate_trace(operator, 60, "xtrace", _seeded(0))
    assert result.num_matvecs == operator.num_matvecs == 60
    assert abs(result.mean - exact) <= 4 * result.stderr

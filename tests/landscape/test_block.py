"""Block Lanczos, block SLQ and block trace probes against dense float64 references."""

from __future__ import annotations

import pytest
import torch

from landscape import DenseOperator, lanczos, slq_nodes, top_eigenvalues
from landscape.operators import LinearOperator, random_vectors

from .conftest import planted
from .test_lanczos import spectrum  # noqa: F401  (fixture)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
@pytest.mark.parametrize("block_size", [2, 5, 8])
def test_block_lanczos_matches_eigvalsh(spectrum, generator, which, block_size):  # noqa: F811
    A = DenseOperator(planted(spectrum, generator))
    result = top_eigenvalues(
        A, 4, which, tol=1e-8, max_steps=200, generator=generator, block_size=block_size
    )
    exact = torch.linalg.eigvalsh(A.matrix)
    order = {"LA": exact.flip(0), "SA": exact, "LM": exact[exact.abs().argsort(descending=True)]}
    torch.testing.assert_close(result.eigenvalues, order[which][:4], rtol=1e-10, atol=0)
    assert result.all_converged and result.num_matvecs == result.num_steps < 200
    assert result.num_steps % block_size == 0 and A.num_matvecs == result.num_matvecs


def test_block_residuals_are_true_residuals(spectrum, generator):  # noqa: F811
    A = planted(spectrum, generator)
    result = top_eigenvalues(A, 3, tol=1e-3, generator=generator, block_size=4)
    V, theta = result.eigenvectors, result.eigenvalues
    true = (A @ V - V * theta).norm(dim=0) / theta.abs()
    torch.testing.assert_close(result.residuals, true, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(V.T @ V, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-10)
    assert result.all_converged


def test_block_finds_repeated_eigenvalues_and_flags(generator):
    values = torch.cat([torch.full((3,), 4.0), torch.linspace(0, 1, 27)]).double()
    A = planted(values, generator)
    result = top_eigenvalues(A, 3, tol=1e-8, generator=generator, block_size=3)
    torch.testing.assert_close(result.eigenvalues, torch.full((3,), 4.0).double())
    exhausted = top_eigenvalues(A, 3, tol=1e-8, generator=generator, block_size=30)
    assert exhausted.all_converged and exhausted.num_steps == 30  # the whole space: exact
    with pytest.warns(RuntimeWarning, match="did not reach"):
        loose = top_eigenvalues(
            A, 4, tol=1e-14, max_steps=8, min_steps=4, generator=generator, block_size=4
        )
    assert not loose.all_converged and loose.num_matvecs == 8
    with pytest.raises(ValueError, match="block_size must be"):
        top_eigenvalues(A, 2, block_size=0)


class Counting(LinearOperator):
    """Dense products that record the width of every call."""

    def __init__(self, matrix, block_size=1):
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device, True)
        self.matrix, self.widths, self.block_size = matrix, [], block_size

    def _matvec(self, v):
        self.widths.append(1)
        return self.matrix @ v

    def _matmat(self, V):
        self.widths.append(V.shape[1])
        return self.matrix @ V


def test_operator_block_size_is_the_default(spectrum, generator):  # noqa: F811
    A = Counting(planted(spectrum, generator), block_size=4)
    result = top_eigenvalues(A, 2, tol=1e-8, generator=generator)
    assert set(A.widths) == {4} and result.all_converged


def test_slq_block_equals_sequential_lanczos(spectrum, generator):  # noqa: F811
    A = Counting(planted(spectrum, generator))
    nodes, weights = slq_nodes(A, 20, 3, torch.Generator().manual_seed(5))
    assert A.widths == [3] * 20  # one block product per step
    reference = torch.Generator().manual_seed(5)
    for r in range(3):
        start = random_vectors(200, None, "rademacher", reference, A)
        *_, state = lanczos(A.matrix, 20, reference, start=start)
        theta, vectors = torch.linalg.eigh(state.tridiagonal())
        torch.testing.assert_close(nodes[r], theta, rtol=0, atol=1e-10)
        torch.testing.assert_close(weights[r], vectors[0] ** 2, rtol=0, atol=1e-10)


def test_trace_probes_are_blocks(spectrum, generator):  # noqa: F811
    from landscape import hutchinson_trace, hutchpp_trace

    A = Counting(planted(spectrum, generator))
    hutchpp_trace(A, 30, generator)
    assert A.widths == [10, 10, 10]
    A.widths.clear()
    hutchinson_trace(A, 12, generator)
    assert A.widths == [12]

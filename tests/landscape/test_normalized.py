"""Normalized curvature and adaptive sharpness: exact against dense float64, invariant to rescaling.

The rescaling check (reference notes, "Sharpness that is invariant to reparametrization"): scale
the weights of a convolution that feeds a BatchNorm by ``c``. The Objective runs the forward in
eval mode, so BatchNorm normalizes with its *running* statistics; then the function is unchanged
only if those are rescaled with the weights (``running_mean * c``, ``running_var * c^2``), which is
what a network trained with the scaled weights would have recorded. The second flavour uses
BatchNorm without running statistics (``track_running_stats=False``: batch statistics in eval mode
too), which is scale-invariant as it stands. In both, BatchNorm's ``eps`` breaks the invariance by
a relative ``eps / var`` (about 1e-5 here; measured below); the rescaled network takes
``eps * c^2`` so that it is exactly the same function, ``sqrt(c^2 var + c^2 eps) = c sqrt(var +
eps)``, and the comparisons hold to rounding.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape.adaptive import adaptive_average, adaptive_worst_case
from landscape.lanczos import top_eigenvalues
from landscape.normalized import NormalizedOperator, normalized_hessian, weight_scale
from landscape.objective import Objective
from landscape.operators import DenseOperator, HessianOperator
from landscape.params import unflatten
from landscape.trace import hutchpp_trace

# c -> bounds on raw lambda_max(c = 1) / lambda_max(c). With c = 3 the conv block of H shrinks by 9
# and the top eigenvector lives mostly in the linear layer, so lambda_max drops only ~15 %
# (2.39 -> 2.07); with c = 1/3 the conv block grows by 9 and lambda_max triples (2.39 -> 7.45).
RAW_RATIO = {3.0: (1.1, 1.3), 1 / 3: (0.2, 0.4)}


def _cnn(running_stats: bool) -> nn.Module:
    """Conv(1->3, 3x3, no bias) -> BN -> tanh -> Linear(48 -> 3): 27 + 6 + 147 = 180 parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3, track_running_stats=running_stats),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(48, 3),
    ).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model.eval()


def _data() -> list:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 4, 4, generator=generator, dtype=torch.float64)
    return [(x, torch.randint(0, 3, (8,), generator=generator))]


def _calibrated(running_stats: bool) -> nn.Module:
    """The CNN with running statistics set to those of the data (as after training)."""
    model = _cnn(running_stats)
    if running_stats:
        with torch.no_grad():
            z = model[0](_data()[0][0])
            model[1].running_mean.copy_(z.mean((0, 2, 3)))
            model[1].running_var.copy_(z.var((0, 2, 3)) * 1.3)  # not exactly the batch's
    return model


def _rescaled(model: nn.Module, c: float, scale_eps: bool = True) -> nn.Module:
    """Same function: conv weights times ``c``, running statistics (and ``eps``) rescaled too."""
    other = copy.deepcopy(model)
    other[1].eps *= c**2 if scale_eps else 1.0
    with torch.no_grad():
        other[0].weight.mul_(c)
        if other[1].track_running_stats:
            other[1].running_mean.mul_(c)
            other[1].running_var.mul_(c**2)
    return other


def _objective(model: nn.Module) -> Objective:
    return Objective(model, nn.functional.cross_entropy, _data(), dtype=torch.float64)


def _dense(operator) -> torch.Tensor:
    return operator @ torch.eye(operator.shape[0], dtype=torch.float64)


@pytest.fixture(
    params=[(True, 3.0), (False, 3.0), (True, 1 / 3), (False, 1 / 3)],
    ids=["running_stats_c3", "batch_stats_c3", "running_stats_c1/3", "batch_stats_c1/3"],
)
def pair(request):
    running_stats, c = request.param
    model = _calibrated(running_stats)
    return model, _rescaled(model, c), c


def test_rescaling_keeps_the_function(pair):
    model, scaled, c = pair
    x = _data()[0][0]
    assert torch.allclose(model(x), scaled(x), rtol=0, atol=1e-12)
    assert abs(float(_objective(model).loss()) - float(_objective(scaled).loss())) < 1e-12
    approximate = _rescaled(model, c, scale_eps=False)  # BN's eps alone: O(eps / var)
    assert 1e-12 < (model(x) - approximate(x)).abs().max() < 1e-4


def test_raw_curvature_moves_normalized_does_not(pair):
    """Raw lambda_max moves by a clear factor; normalized lambda_max and trace agree to 1e-8."""
    model, scaled, c = pair
    raw, normalized = [], []
    for net in (model, scaled):
        objective = _objective(net)
        generator = torch.Generator().manual_seed(3)
        raw.append(top_eigenvalues(HessianOperator(objective), 1, tol=1e-10, generator=generator))
        operator = normalized_hessian(objective)
        assert operator.curvature == "normalized_autograd_surrogate_hessian"
        eig = top_eigenvalues(operator, 1, tol=1e-10, generator=torch.Generator().manual_seed(3))
        exact = float(torch.diagonal(_dense(operator)).sum())
        hutch = hutchpp_trace(operator, 30, torch.Generator().manual_seed(4)).mean
        normalized.append((float(eig.eigenvalues[0]), exact, hutch))
    ratio = float(raw[0].eigenvalues[0] / raw[1].eigenvalues[0])
    low, high = RAW_RATIO[c]
    assert low < ratio < high, ratio
    for before, after in zip(*normalized):
        assert after == pytest.approx(before, rel=1e-8, abs=1e-12)


def test_adaptive_sharpness_is_invariant(pair):
    model, scaled, c = pair
    results = []
    for net in (model, scaled):
        objective = _objective(net)
        results.append(
            [
                adaptive_worst_case(objective, 0.1, 2, num_steps=5).value,
                adaptive_worst_case(
                    objective,
                    0.05,
                    math.inf,
                    num_steps=5,
                    generator=torch.Generator().manual_seed(5),
                ).value,
                adaptive_average(
                    objective, 0.1, 16, generator=torch.Generator().manual_seed(6)
                ).value,
            ]
        )
    assert min(results[0][:2]) > 0 and results[0][2] != 0
    assert results[1] == pytest.approx(results[0], rel=1e-8, abs=1e-12)


def test_normalized_hessian_against_dense_autograd():
    """diag(|w|) H diag(|w|) against torch.autograd.functional.hessian, float64."""
    model = _calibrated(True)
    objective = _objective(model)
    x, y = _data()[0]
    buffers = dict(model.named_buffers())
    w = objective.params

    def loss(theta):
        tensors = {**buffers, **unflatten(theta, objective.shapes)}
        return nn.functional.cross_entropy(functional_call(model, tensors, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss, w)
    reparametrized = torch.autograd.functional.hessian(lambda t: loss(w * t), torch.ones_like(w))
    dense = _dense(normalized_hessian(objective))
    signs = torch.diag(torch.sign(w))
    assert torch.allclose(signs @ dense @ signs, reparametrized, rtol=0, atol=1e-10)
    expected = torch.diag(w.abs()) @ hessian @ torch.diag(w.abs())
    assert torch.allclose(dense, expected, rtol=0, atol=1e-10)
    assert torch.allclose(weight_scale(objective), w.abs())


def test_normalized_operator_on_dense_matrices(generator):
    matrix = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    matrix = matrix + matrix.T
    scale = torch.rand(6, generator=generator, dtype=torch.float64) + 0.5
    operator = NormalizedOperator(DenseOperator(matrix), scale)
    expected = torch.diag(scale) @ matrix @ torch.diag(scale)
    block = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    assert torch.allclose(operator @ block, expected @ block, atol=1e-13)
    assert torch.allclose(operator @ block[:, 0], expected @ block[:, 0], atol=1e-13)
    assert operator.num_matvecs == 4 and operator.is_symmetric
    assert operator.curvature == "normalized_dense_matrix"
    with pytest.raises(ValueError, match="scale must have shape"):
        NormalizedOperator(matrix, scale[:3])
    with pytest.raises(ValueError, match="eta must be"):
        weight_scale(_objective(_cnn(False)), eta=-1.0)

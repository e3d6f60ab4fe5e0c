"""Adaptive sharpness against closed forms on an exactly quadratic loss (float64).

Linear least squares ``L(w) = mean((x^T w - y)^2) / 2`` has ``H = X^T X / N``; at its minimum
``w*`` the gradient vanishes and ``L(w* + delta) - L(w*) = delta^T H delta / 2`` exactly, so with
``M = T_w H T_w`` (``T_w = diag(|w*|)``):

- worst case, ``p = 2``: ``max_{||u|| <= rho} u^T M u / 2 = rho^2 lambda_max(M) / 2``;
- average: ``E_z (rho z)^T M (rho z) / 2 = rho^2 tr(M) / 2``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from landscape.adaptive import (
    adaptive_average,
    adaptive_worst_case,
    apgd_checkpoints,
    apgd_worst_case,
    first_order_term,
)
from landscape.objective import Objective


def _squared_error(outputs, targets):
    return ((outputs.squeeze(-1) - targets) ** 2).mean() / 2


@pytest.fixture
def least_squares():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    x = x * torch.tensor([3.0, 1.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    y = torch.randn(40, generator=generator, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y[:, None]).solution.T)  # the minimum
    objective = Objective(model, _squared_error, [(x[:25], y[:25]), (x[25:], y[25:])])
    w = objective.params
    normalized = torch.diag(w.abs()) @ (x.T @ x / 40) @ torch.diag(w.abs())
    return model, objective, normalized


def test_worst_case_reaches_the_top_eigenvalue(least_squares):
    model, objective, normalized = least_squares
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rho = 0.2
    result = adaptive_worst_case(
        objective,
        rho,
        2,
        num_steps=100,
        step_fraction=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    expected = rho**2 * float(torch.linalg.eigvalsh(normalized)[-1]) / 2
    assert result.value == pytest.approx(expected, rel=1e-6)
    assert result.radius_reached == pytest.approx(rho)
    assert result.seed == 1 and result.rho == rho and result.p == 2 and result.num_gradients == 100
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # not mutated


def test_worst_case_stays_in_the_ball(least_squares):
    _, objective, normalized = least_squares
    rho = 0.1
    box = adaptive_worst_case(
        objective, rho, math.inf, 20, generator=torch.Generator().manual_seed(2)
    )
    assert box.radius_reached <= rho + 1e-15 and box.p == math.inf
    # the box holds the ball of radius rho and lies in the ball of radius rho sqrt(n)
    top = float(torch.linalg.eigvalsh(normalized)[-1])
    assert rho**2 * top / 2 * (1 - 1e-6) <= box.value <= 5 * rho**2 * top / 2
    # from delta = 0 (no generator): a lower bound of the same maximum
    plain = adaptive_worst_case(objective, rho, 2, 3)
    assert 0 <= plain.value <= rho**2 * top / 2 * (1 + 1e-9) and plain.seed is None


def test_average_matches_half_rho_squared_trace(least_squares):
    _, objective, normalized = least_squares
    rho = 0.3
    result = adaptive_average(objective, rho, 2000, generator=torch.Generator().manual_seed(3))
    expected = rho**2 * float(torch.trace(normalized)) / 2
    assert abs(result.value - expected) < 4 * result.stderr
    assert result.stderr == pytest.approx(result.std / math.sqrt(2000))
    again = adaptive_average(objective, rho, 2000, generator=torch.Generator().manual_seed(3))
    assert again.increases == result.increases and result.seed == 3 and result.rho == rho
    single = adaptive_average(objective, rho, 1)
    assert math.isnan(single.std) and single.seed is None


def test_eta_and_validation(least_squares):
    _, objective, _ = least_squares
    with_eta = adaptive_average(
        objective, 0.1, 4, eta=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert with_eta.eta == 0.5 and with_eta.value > 0
    with pytest.raises(ValueError, match="rho must be > 0"):
        adaptive_worst_case(objective, 0.0)
    with pytest.raises(ValueError, match="p must be 2 or inf"):
        adaptive_worst_case(objective, 0.1, p=1)
    with pytest.raises(ValueError, match="num_steps"):
        adaptive_worst_case(objective, 0.1, num_steps=0)
    with pytest.raises(ValueError, match="num_samples"):
        adaptive_average(objective, 0.1, 0)


def _linear_objective():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(30, 6, generator=generator, dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 6, generator=generator, dtype=torch.float64))
    return Objective(model, lambda outputs, targets: outputs.mean(), [(x, torch.zeros(30))])


@pytest.mark.parametrize("p", [2, math.inf])
def test_on_a_linear_loss_apgd_and_the_first_order_term_agree(p):
    # L(w) = w . mean(x) is linear: the worst case over the ball is exactly its first-order term.
    objective = _linear_objective()
    rho = 0.05
    term = first_order_term(objective, rho, p)
    g_u = objective.params.abs() * objective.grad()
    expected = rho * (g_u.abs().sum() if p == math.inf else g_u.norm())
    assert term == pytest.approx(float(expected), rel=1e-12)
    found = apgd_worst_case(objective, rho, p, num_steps=10, num_restarts=2)
    assert found.value == pytest.approx(term, rel=1e-9)
    assert found.num_gradients == 20 and found.num_restarts == 2 and len(found.restart_values) == 2


def test_apgd_finds_at_least_the_fixed_step_ascent_on_the_quadratic(least_squares):
    _, objective, normalized = least_squares
    rho = 0.2
    exact = rho**2 * float(torch.linalg.eigvalsh(normalized)[-1]) / 2
    fixed = adaptive_worst_case(objective, rho, 2, num_steps=10)
    found = apgd_worst_case(objective, rho, 2, num_steps=20, num_restarts=3)
    assert fixed.value <= found.value * (1 + 1e-9) and found.value <= exact * (1 + 1e-9)
    assert found.value == pytest.approx(exact, rel=1e-3)  # it reaches the maximum
    seeded = [
        apgd_worst_case(objective, rho, 2, generator=torch.Generator().manual_seed(5)).value
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1]


def test_apgd_checkpoints_follow_croce_and_hein():
    assert apgd_checkpoints(100)[:4] == [22, 41, 58, 70]
    assert apgd_checkpoints(20)[0] == 5 and apgd_checkpoints(20)[-1] <= 20

"""Sharpness measures against exact answers: quadratics, boxes with known maxima, staircases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from landscape.objective import Objective
from landscape.sharpness import (
    basin_width,
    epsilon_sharpness,
    flat_step_fraction,
    perturbation_sharpness,
    quadratic_curvature,
    surface_statistics,
)
from landscape.store import Grid
from landscape.surface import SurfaceEvaluator


class Quadratic(nn.Module):
    """``f(w) = sum_i h_i (w_i - 1)^2``: minimum at w = 1, returned as the model's output."""

    def __init__(self, h: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones_like(h))
        self.register_buffer("h", h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.h * (self.w - 1) ** 2).sum() + 0 * x.sum()


def quadratic_objective(h: torch.Tensor) -> Objective:
    model = Quadratic(h.double()).double()
    batches = [(torch.zeros(1, dtype=torch.float64), torch.zeros(1))]
    return Objective(model, lambda outputs, labels: outputs, batches)


def test_epsilon_sharpness_reaches_the_box_maximum_of_a_quadratic():
    h = torch.tensor([1.0, 4.0, 0.5], dtype=torch.float64)
    objective, epsilon = quadratic_objective(h), 0.1
    result = epsilon_sharpness(
        objective,
        epsilon,
        num_steps=8,
        step_fraction=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    # |y_i| <= eps (|w_i| + 1) = 0.2 at w = 1; the maximum is at a vertex: sum_i h_i 0.2^2.
    exact = float((h * 0.2**2).sum())
    assert result.loss_centre == 0.0 and result.loss_max == pytest.approx(exact, rel=1e-12)
    assert result.value == pytest.approx(100 * exact, rel=1e-12)
    assert result.num_gradients == 8 and len(result.losses) == 8


def test_epsilon_sharpness_never_leaves_the_box():
    objective = quadratic_objective(torch.tensor([1.0, 2.0]))
    result = epsilon_sharpness(
        objective, 0.05, num_steps=5, step_fraction=3.0, generator=torch.Generator().manual_seed(1)
    )
    assert max(result.losses) <= 3 * (0.05 * 2) ** 2 + 1e-15
    with pytest.raises(ValueError, match="must be > 0"):
        epsilon_sharpness(objective, 0.0)


def test_perturbation_sharpness_matches_direct_evaluation():
    model = nn.Linear(3, 2).double()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def squares(outputs, labels):
        return {"loss": outputs.pow(2).sum(1).sum()}

    generator = torch.Generator().manual_seed(2)
    found = [
        {"weight": torch.randn(2, 3, generator=generator, dtype=torch.float64)} for _ in range(3)
    ]
    evaluator = SurfaceEvaluator(model, found, [(x, torch.zeros(5))], squares)
    [small, large] = perturbation_sharpness(evaluator, [0.1, 0.5])["loss"]
    with torch.no_grad():
        centre = model(x).pow(2).sum(1).mean().item()
        increases = [
            (torch.nn.functional.linear(x, model.weight + 0.5 * d["weight"], model.bias))
            .pow(2)
            .sum(1)
            .mean()
            .item()
            - centre
            for d in found
        ]
    assert large.centre == pytest.approx(centre, rel=1e-12)
    np.testing.assert_allclose(large.increases, increases, rtol=1e-10)
    assert large.mean == pytest.approx(np.mean(increases), rel=1e-10)
    assert large.std == pytest.approx(np.std(increases, ddof=1), rel=1e-10)
    assert large.stderr == pytest.approx(large.std / np.sqrt(3), rel=1e-12)
    assert small.radius == 0.1 and len(small.increases) == 3


@pytest.mark.parametrize("dim", [1, 2])
def test_quadratic_fit_recovers_planted_coefficients(dim):
    grid = Grid.linspace(*[(-1, 1, 9), (-0.5, 1, 7)][:dim])
    mesh = np.meshgrid(*grid.axes, indexing="ij")
    if dim == 1:
        values = 0.3 + 0.2 * mesh[0] + 0.5 * 3.0 * mesh[0] ** 2
        fit = quadratic_curvature(grid.axes, values, radius=0.6)
        assert fit["curvature"] == pytest.approx(3.0, rel=1e-10)
        assert fit["slope"] == pytest.approx(0.2, rel=1e-10)
    else:
        x, y = mesh
        values = 1.0 + 0.5 * (2.0 * x**2 + 6.0 * y**2) + 0.5 * x * y
        fit = quadratic_curvature(grid.axes, values)
        assert (fit["curvature_xx"], fit["curvature_yy"]) == pytest.approx((2.0, 6.0), rel=1e-10)
        assert fit["curvature_xy"] == pytest.approx(0.5, rel=1e-10)
        expected = np.linalg.eigvalsh([[2.0, 0.5], [0.5, 6.0]])
        assert [fit["curvature_min"], fit["curvature_max"]] == pytest.approx(expected, rel=1e-10)
    assert fit["value"] == pytest.approx(0.3 if dim == 1 else 1.0, rel=1e-10)
    assert fit["rms_residual"] < 1e-12


def test_basin_width_interpolates_and_flags_censoring():
    axis = np.linspace(-1, 1, 9)  # step 0.25
    result = basin_width(axis, axis**2, threshold=0.25)
    assert (result["left"], result["right"], result["width"]) == pytest.approx((-0.5, 0.5, 1.0))
    assert result["censored"] == 0
    line = basin_width(axis, np.abs(axis), threshold=0.6)  # crossings at +-0.6, between points
    assert line["width"] == pytest.approx(1.2, rel=1e-12)
    flat = basin_width(axis, np.zeros(9), threshold=0.1)
    assert flat["censored"] == 1 and flat["width"] == 2.0


def test_flat_steps_and_statistics_of_a_staircase():
    axis = np.linspace(-1, 1, 41)
    stairs = np.floor(np.abs(axis) * 4) / 4
    assert flat_step_fraction(stairs) == pytest.approx(32 / 40)
    stats = surface_statistics([axis, axis], np.add.outer(stairs, stairs), threshold=0.3)
    assert {"curvature", "flat_step_fraction", "basin_width_x", "basin_width_y"} <= set(stats)
    assert stats["basin_width_x"] == pytest.approx(stats["basin_width_y"])

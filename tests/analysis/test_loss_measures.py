"""The loss measures (curvature and sharpness) and random perturbations of a tiny checkpoint,
against a dense float64 Hessian and hand-written ascents and draws."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from analysis.measures import curvature, sharpness
from analysis.measures.inputs import DataSpec, Evaluation, load_input
from analysis.measures.registry import get
from landscape.adaptive import apgd_worst_case
from landscape.directions import random_direction
from tests.helpers import dense_hessian, save_mlp
from toolkit.errors import ConfigError
from training.runs import checkpoint
from training.snn.losses import tet_loss

F64 = torch.float64


@pytest.fixture(scope="module")
def input(tmp_path_factory):
    path = save_mlp(tmp_path_factory.mktemp("run") / "last.pt", "tet", 0, T=2, hidden=(3,))
    return load_input(checkpoint.read(path), DataSpec(samples=24))


@pytest.fixture(scope="module")
def loss(input):
    return input.loss("checkpoint", dtype=F64)


@pytest.fixture(scope="module")
def hessian(loss) -> torch.Tensor:
    dense = dense_hessian(loss.objective)
    assert (dense - dense.T).abs().max() < 1e-12
    return (dense + dense.T) / 2


def _seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normalized(loss, hessian, eta: float) -> torch.Tensor:
    scale = loss.objective.params.abs() + eta
    return scale[:, None] * hessian * scale[None, :]


# --- curvature ---


def test_lambda_max_equals_the_dense_top_eigenvalue(loss, hessian):
    settings = curvature.LambdaMaxSettings(lanczos_tol=1e-9, lanczos_max_steps=300)
    found = get("lambda_max").estimate(loss, settings, _seeded())
    exact = torch.linalg.eigvalsh(hessian)
    assert exact[0] < 0 < exact[-1]  # indefinite: the largest, not the largest magnitude
    assert found.value == pytest.approx(float(exact[-1]), rel=1e-8)
    assert found.converged and 0 < found.num_evaluations <= 300 and math.isnan(found.stderr)


@pytest.mark.parametrize("eta", [0.0, 0.1])
def test_normalized_lambda_max_equals_the_dense_one(loss, hessian, eta):
    settings = curvature.NormalizedLambdaMaxSettings(
        lanczos_tol=1e-9, lanczos_max_steps=300, eta=eta
    )
    found = get("normalized_lambda_max").estimate(loss, settings, _seeded())
    exact = float(torch.linalg.eigvalsh(_normalized(loss, hessian, eta))[-1])
    assert found.value == pytest.approx(exact, rel=1e-8) and found.converged


def test_a_loose_lanczos_reports_its_convergence(loss, hessian):
    settings = curvature.LambdaMaxSettings(lanczos_tol=1e-12, lanczos_max_steps=2)
    with pytest.warns(RuntimeWarning, match="did not reach the relative residual"):
        found = curvature.lambda_max(loss, settings, _seeded())
    assert found.num_evaluations <= 2 and not found.converged
    assert found.value <= float(torch.linalg.eigvalsh(hessian)[-1]) + 1e-12  # a Ritz value


@pytest.mark.parametrize("method,factor", [("hutch++", 3), ("xtrace", 2)])
def test_trace_with_a_full_sketch_is_exact(loss, hessian, method, factor):
    n = loss.objective.num_params
    found = curvature.trace(loss, curvature.TraceSettings(method, factor * n), _seeded())
    assert found.value == pytest.approx(float(torch.trace(hessian)), rel=1e-9, abs=1e-12)
    assert found.num_evaluations == factor * n and found.converged


@pytest.mark.parametrize("method", ["xtrace", "hutch++", "hutchinson"])
def test_trace_is_within_its_standard_error(loss, hessian, method):
    found = curvature.trace(loss, curvature.TraceSettings(method, 60), _seeded(3))
    exact = float(torch.trace(hessian))
    assert found.stderr > 0 and found.num_evaluations == 60
    assert abs(found.value - exact) < 4 * found.stderr
    again = curvature.trace(loss, curvature.TraceSettings(method, 60), _seeded(3))
    assert again == found  # seeded


def test_normalized_trace_is_within_its_standard_error(loss, hessian):
    settings = curvature.NormalizedTraceSettings(trace_matvecs=45, eta=0.1)
    found = get("normalized_trace").estimate(loss, settings, _seeded())
    exact = float(torch.trace(_normalized(loss, hessian, 0.1)))
    assert abs(found.value - exact) < 4 * found.stderr
    full = curvature.NormalizedTraceSettings("xtrace", 2 * loss.objective.num_params, eta=0.1)
    assert curvature.normalized_trace(loss, full, _seeded()).value == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize(
    "cls,changes,message",
    [
        (curvature.LambdaMaxSettings, {"lanczos_tol": 0.0}, "lanczos_tol must be in (0, 1]"),
        (curvature.LambdaMaxSettings, {"lanczos_tol": 1.5}, "lanczos_tol must be in (0, 1]"),
        (curvature.LambdaMaxSettings, {"lanczos_max_steps": 0}, "lanczos_max_steps must be >= 1"),
        (curvature.TraceSettings, {"trace_matvecs": 3}, "trace_matvecs must be >= 4"),
        (curvature.TraceSettings, {"trace_method": "exact"}, "trace_method must be one of"),
        (curvature.NormalizedLambdaMaxSettings, {"eta": -0.1}, "eta must be >= 0"),
        (curvature.NormalizedTraceSettings, {"trace_matvecs": 2}, "trace_matvecs must be >= 4"),
    ],
)
def test_curvature_settings_refuse(cls, changes, message):
    with pytest.raises(ConfigError) as info:
        cls(**changes)
    assert str(info.value).startswith(message)


# --- sharpness ---


def _loss_at(loss, params: torch.Tensor) -> float:
    return float(loss.objective.loss(params))


def test_epsilon_sharpness_one_step_by_hand(loss):
    settings = sharpness.EpsilonSettings(epsilon=0.05, epsilon_steps=1, ascent_step_fraction=1.0)
    found = get("epsilon_sharpness").estimate(loss, settings, _seeded(7))
    x = loss.objective.params
    bound = 0.05 * (x.abs() + 1)
    start = (2 * torch.rand(x.shape, generator=_seeded(7), dtype=F64) - 1) * bound
    step = start + bound * loss.objective.grad(x + start).sign()
    step = torch.maximum(torch.minimum(step, bound), -bound)
    centre = _loss_at(loss, x)
    best = max(_loss_at(loss, x + start), _loss_at(loss, x + step))
    assert found.value == pytest.approx(100 * (best - centre) / (1 + centre), rel=1e-10)
    assert found.num_evaluations == 3 and math.isnan(found.stderr)  # + the first-order gradient


def test_epsilon_sharpness_is_seeded_and_grows_with_the_box(loss):
    small = sharpness.EpsilonSettings(epsilon=1e-3, epsilon_steps=3)
    values = [sharpness.epsilon(loss, small, _seeded(0)) for _ in range(2)]
    assert values[0] == values[1] and math.isfinite(values[0].value)
    assert values[0].num_evaluations == 7
    large = sharpness.epsilon(
        loss, sharpness.EpsilonSettings(epsilon=0.1, epsilon_steps=3), _seeded(0)
    )
    assert large.value > values[0].value and large.value > 0


def test_epsilon_first_order_part_by_hand(loss):
    settings = sharpness.EpsilonSettings(epsilon=0.05, epsilon_steps=1)
    found = sharpness.epsilon(loss, settings, _seeded(7))
    x = loss.objective.params
    linear = 0.05 * float(((x.abs() + 1) * loss.objective.grad(x).abs()).sum())
    assert found.first_order == pytest.approx(100 * linear / (1 + _loss_at(loss, x)), rel=1e-10)


def test_adaptive_worst_is_auto_pgd_at_every_radius_of_the_sweep(loss):
    settings = sharpness.AdaptiveWorstSettings(
        adaptive_rho=0.2,
        adaptive_sweep=(0.1, 0.4),
        adaptive_steps=4,
        adaptive_restarts=3,
        adaptive_sweep_restarts=2,
        eta=0.05,
    )
    found = get("adaptive_worst").estimate(loss, settings, _seeded(5))
    assert [e.name for e in found] == [None, "adaptive_worst@0.1", "adaptive_worst@0.4"]
    w = loss.objective.params
    g = (w.abs() + 0.05) * loss.objective.grad(w)
    for estimate, radius, restarts in zip(found, (0.2, 0.1, 0.4), (3, 2, 2)):
        # every radius starts from the same seeded draws
        ascent = apgd_worst_case(
            loss.objective, radius, math.inf, 4, restarts, 0.05, generator=_seeded(5)
        )
        assert estimate.value == ascent.value and estimate.parameter == radius
        assert estimate.num_evaluations == 2 * 4 * restarts + 1 and math.isnan(estimate.stderr)
        assert estimate.first_order == pytest.approx(radius * float(g.abs().sum()), rel=1e-10)
    assert found[0].value > 0


@pytest.mark.parametrize("p", [2.0, math.inf])
def test_adaptive_worst_is_nonnegative_and_seeded(loss, p):
    settings = sharpness.AdaptiveWorstSettings(
        adaptive_p=p, adaptive_rho=0.05, adaptive_steps=3, adaptive_sweep=()
    )
    first = sharpness.adaptive_worst(loss, settings, _seeded(2))
    assert first == sharpness.adaptive_worst(loss, settings, _seeded(2)) and len(first) == 1
    assert first[0].value >= 0 and math.isfinite(first[0].value)
    assert first[0].num_evaluations == 2 * 3 * 3 + 1


def test_adaptive_average_equals_its_draws(loss):
    settings = sharpness.AdaptiveAverageSettings(average_rho=0.1, average_samples=5, eta=0.02)
    found = get("adaptive_average").estimate(loss, settings, _seeded(4))
    w = loss.objective.params
    scale, centre, generator = w.abs() + 0.02, _loss_at(loss, w), _seeded(4)
    increases = torch.tensor(
        [
            _loss_at(loss, w + 0.1 * scale * torch.randn(w.shape, generator=generator, dtype=F64))
            - centre
            for _ in range(5)
        ],
        dtype=F64,
    )
    assert found.value == pytest.approx(float(increases.mean()), rel=1e-10, abs=1e-14)
    assert found.stderr == pytest.approx(float(increases.std() / math.sqrt(5)), rel=1e-8)
    assert found.num_evaluations == 5 and found.converged


@pytest.mark.parametrize(
    "cls,changes,message",
    [
        (sharpness.EpsilonSettings, {"epsilon": 0.0}, "epsilon must be > 0"),
        (
            sharpness.EpsilonSettings,
            {"ascent_step_fraction": 1.5},
            "ascent_step_fraction must be in (0, 1]",
        ),
        (
            sharpness.AdaptiveWorstSettings,
            {"adaptive_p": 1.0},
            "adaptive_p must be one of 2.0, inf",
        ),
        (
            sharpness.AdaptiveWorstSettings,
            {"adaptive_p": math.nan},
            "adaptive_p must be a number, not NaN",
        ),
        (sharpness.AdaptiveWorstSettings, {"adaptive_steps": 0}, "adaptive_steps must be >= 1"),
        (sharpness.AdaptiveAverageSettings, {"average_samples": 1}, "average_samples must be >= 2"),
        (
            sharpness.AdaptiveAverageSettings,
            {"average_rho": math.inf},
            "average_rho must be finite",
        ),
        (sharpness.PerturbationSettings, {"radius": ()}, "radius must be a non-empty list"),
        (sharpness.PerturbationSettings, {"radius": (0.1, 0.0)}, "radius must be > 0"),
        (sharpness.PerturbationSettings, {"draws": 0}, "draws must be >= 1"),
    ],
)
def test_sharpness_settings_refuse(cls, changes, message):
    with pytest.raises(ConfigError) as info:
        cls(**changes)
    assert str(info.value).startswith(message)


def test_random_perturbation_rows_and_values(input):
    settings = sharpness.PerturbationSettings(radius=(0.1, 0.5), draws=3)
    evaluation = Evaluation(dtype=F64, seed=11, quiet=True)
    result = get("random_perturbation").compute(input, settings, evaluation)
    assert all(tuple(row) == sharpness.PERTURBATION_COLUMNS for row in result.rows)
    metrics = sorted({row["metric"] for row in result.rows})
    assert {"l_sdt", "l_tet", "accuracy"} <= set(metrics)
    assert len(result.rows) == 2 * len(metrics)
    for row in result.rows:
        assert row["n"] == 3 and row["measure"] == "random_perturbation" and row["method"] == "tet"
        assert row["checkpoint"] == str(input.checkpoint.path)
        assert row["stderr"] == pytest.approx(row["std"] / math.sqrt(3), rel=1e-12)
    again = sharpness.random_perturbation(input, settings, evaluation).rows
    assert again == result.rows  # seeded

    # the same draws by hand: filter-normalized Gaussian directions, biases fixed, float64 forward
    model = copy.deepcopy(input.model).double()
    weights = {n: p.detach() for n, p in input.model.named_parameters()}
    generator = torch.Generator().manual_seed(11)
    directions = [random_direction(weights, generator) for _ in range(3)]
    x, y = input.loader.x.double(), input.loader.y
    config = input.config

    def losses(shift: dict) -> tuple[float, float]:
        params = {n: p.double() + shift.get(n, 0.0) for n, p in weights.items()}
        with torch.no_grad():
            outputs = functional_call(model, params, (x,))
        sdt = F.cross_entropy(outputs.mean(0), y)
        return float(sdt), float(tet_loss(outputs, y, config.tet_lambda, config.tet_phi))

    centre = losses({})
    for radius in (0.1, 0.5):
        moved = [losses({n: radius * t.double() for n, t in d.items()}) for d in directions]
        for index, metric in enumerate(("l_sdt", "l_tet")):
            increases = torch.tensor([m[index] - centre[index] for m in moved], dtype=F64)
            row = next(r for r in result.rows if r["metric"] == metric and r["parameter"] == radius)
            assert row["value"] == pytest.approx(float(increases.mean()), rel=1e-9, abs=1e-12)
            assert row["std"] == pytest.approx(float(increases.std()), rel=1e-7, abs=1e-12)

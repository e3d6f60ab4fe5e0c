"""The hooks the analysis reaches the engine through (landscape.api): objective, hessian,
surface_evaluator and directions, and the direction-kind registry behind them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape import api
from landscape import directions as dirs
from landscape.directions import DIRECTION_KINDS, DirectionSet, build_directions, direction_kind
from landscape.operators import HessianOperator
from landscape.store import Grid

F64 = torch.float64


def _criterion():
    return nn.CrossEntropyLoss()


def _flat(direction: dict, names) -> torch.Tensor:
    return torch.cat([direction[n].reshape(-1) for n in names])


def test_param_names_restrict_the_objective(tanh_mlp, mlp_batches):
    names = [n for n, _ in tanh_mlp.named_parameters()]
    full = api.objective(tanh_mlp, _criterion(), mlp_batches)
    part = api.objective(tanh_mlp, _criterion(), mlp_batches, param_names=names[2:])
    sizes = [p.numel() for p in tanh_mlp.parameters()]
    offset = sum(sizes[:2])
    assert full.num_params == sum(sizes) == 67 and part.num_params == sum(sizes[2:]) == 27
    assert float(part.loss()) == pytest.approx(float(full.loss()), rel=1e-15)
    torch.testing.assert_close(part.grad(), full.grad()[offset:], rtol=1e-12, atol=1e-15)
    dense = torch.stack([full.hvp(e) for e in torch.eye(full.num_params, dtype=F64)])
    block = torch.stack([part.hvp(e) for e in torch.eye(part.num_params, dtype=F64)])
    torch.testing.assert_close(block, dense[offset:, offset:], rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError):
        api.objective(tanh_mlp, _criterion(), mlp_batches, param_names=["nope.weight"])


@pytest.mark.parametrize("cached", [True, False])
def test_hessian_is_the_operator_of_the_objective(
    tiny_snn, snn_batches, snn_loss, generator, cached
):
    operator = api.hessian(tiny_snn, snn_loss, snn_batches, use_cached_graph=cached)
    reference = HessianOperator(api.objective(tiny_snn, snn_loss, snn_batches))
    assert isinstance(operator, HessianOperator) and operator.shape == reference.shape
    assert operator.dtype == F64 and operator.is_symmetric
    for _ in range(3):
        v = torch.randn(operator.shape[0], generator=generator, dtype=F64)
        torch.testing.assert_close(operator @ v, reference @ v, rtol=1e-12, atol=1e-12)
    block = torch.randn(operator.shape[0], 3, generator=generator, dtype=F64)
    torch.testing.assert_close(operator @ block, reference @ block, rtol=1e-12, atol=1e-12)


def test_hessian_of_a_parameter_block(tanh_mlp, mlp_batches, generator):
    names = ["2.weight", "2.bias"]
    operator = api.hessian(tanh_mlp, _criterion(), mlp_batches, param_names=names)
    objective = api.objective(tanh_mlp, _criterion(), mlp_batches, param_names=names)
    v = torch.randn(27, generator=generator, dtype=F64)
    assert operator.shape[0] == 27
    torch.testing.assert_close(operator @ v, objective.hvp(v), rtol=1e-12, atol=1e-12)


def test_surface_evaluator_equals_the_one_call_random_plane(tanh_mlp, mlp_batches):
    criterion = _criterion()
    plane = api.random_plane(tanh_mlp, criterion, mlp_batches, steps=5, span=0.5, seed=3)
    found = api.directions("random", tanh_mlp, dim=2, generator=torch.Generator().manual_seed(3))

    def sums(outputs, y):
        return {"loss": criterion(outputs, y) * len(y)}

    evaluator = api.surface_evaluator(tanh_mlp, found.directions, mlp_batches, sums)
    grid = Grid.linspace((-0.5, 0.5, 5), (-0.5, 0.5, 5))
    values = evaluator.evaluate(grid.coordinates())["loss"].numpy().reshape(grid.shape)
    np.testing.assert_allclose(values, plane.values["loss"], rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        centre = float(criterion(tanh_mlp(mlp_batches[0][0]), mlp_batches[0][1]))
    assert evaluator.num_samples == 12 and values[2, 2] == pytest.approx(centre, rel=1e-12)
    assert np.ptp(values) > 0  # the directions move the loss


def test_surface_evaluator_adds_batch_sums(tiny_snn, snn_batches, snn_loss, generator):
    directions = [api.directions("random", tiny_snn, dim=1, generator=generator).directions[0]]

    def sums(outputs, y):
        return {"loss": snn_loss(outputs, y) * len(y), "count": torch.tensor(float(len(y)))}

    evaluator = api.surface_evaluator(tiny_snn, directions, snn_batches, sums)
    coords = torch.tensor([[0.0], [0.3]], dtype=F64)
    values = evaluator.evaluate(coords)
    model = copy.deepcopy(tiny_snn)
    x = torch.cat([x for x, _ in snn_batches])
    y = torch.cat([y for _, y in snn_batches])
    with torch.no_grad():
        centre = float(snn_loss(model(x[:5]), y[:5]) * 5 + snn_loss(model(x[5:]), y[5:]) * 3) / 8
    assert float(values["loss"][0]) == pytest.approx(centre, rel=1e-12)
    assert values["count"].tolist() == [1.0, 1.0]  # sums / samples: a per-sample mean
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.add_(0.3 * directions[0][name])
        moved = float(snn_loss(model(x[:5]), y[:5]) * 5 + snn_loss(model(x[5:]), y[5:]) * 3) / 8
    assert float(values["loss"][1]) == pytest.approx(moved, rel=1e-12)


def test_random_directions(tanh_mlp):
    found = api.directions("random", tanh_mlp, dim=2, generator=torch.Generator().manual_seed(0))
    again = api.directions("random", tanh_mlp, dim=2, generator=torch.Generator().manual_seed(0))
    assert isinstance(found, DirectionSet) and len(found.directions) == 2
    names = [n for n, _ in tanh_mlp.named_parameters()]
    assert all(set(d) == set(names) for d in found.directions)
    assert all(
        torch.equal(_flat(a, names), _flat(b, names))
        for a, b in zip(found.directions, again.directions)
    )
    norms = [float(_flat(d, names).norm()) for d in found.directions]
    assert found.info["norms"] == pytest.approx(norms, rel=1e-12)
    assert found.info["normalization"] == "filter" and "cosine" in found.info
    weight = dict(tanh_mlp.named_parameters())["0.weight"]
    torch.testing.assert_close(
        found.directions[0]["0.weight"].norm(dim=1), weight.detach().norm(dim=1)
    )
    assert not found.directions[0]["0.bias"].any()


def test_interp_directions_include_buffers(generator):
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    b = copy.deepcopy(a)
    with torch.no_grad():
        for t in b.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=generator, dtype=F64))
    found = api.directions("interp", a, ends=[b.state_dict()])
    direction = found.directions[0]
    assert "1.running_mean" in direction and "1.num_batches_tracked" not in direction
    for name, tensor in direction.items():
        torch.testing.assert_close(
            a.state_dict()[name] + tensor, b.state_dict()[name], rtol=0, atol=1e-15
        )
    expected = torch.cat([t.reshape(-1) for t in direction.values()]).norm()
    assert found.info["norms"] == pytest.approx([float(expected)], rel=1e-12)
    assert found.info["includes_buffers"] is True


def test_pca_directions_of_a_trajectory(tanh_mlp, generator):
    centre = {n: p.detach() for n, p in tanh_mlp.named_parameters()}
    trajectory = [
        {
            n: t + 0.1 * k * torch.randn(t.shape, generator=generator, dtype=F64)
            for n, t in centre.items()
        }
        for k in range(4)
    ]
    found = api.directions("pca", tanh_mlp, trajectory=trajectory, dim=2)
    assert len(found.directions) == 2 and found.extras["trajectory"].shape == (4, 2)
    ratios = found.info["explained_variance_ratio"]
    assert len(ratios) == 2 and ratios[0] >= ratios[1] > 0 and sum(ratios) <= 1 + 1e-12
    names = list(centre)
    flat = [_flat(d, names) for d in found.directions]
    assert abs(float(flat[0] @ flat[1])) < 1e-10  # orthogonal principal directions
    assert found.info["norms"] == pytest.approx([float(f.norm()) for f in flat], rel=1e-12)


def test_eigen_directions_are_the_top_eigenvectors(tanh_mlp, mlp_batches):
    objective = api.objective(tanh_mlp, _criterion(), mlp_batches)
    operator = api.hessian(tanh_mlp, _criterion(), mlp_batches)
    found = api.directions(
        "eigen",
        tanh_mlp,
        operator=operator,
        shapes=objective.shapes,
        dim=2,
        generator=torch.Generator().manual_seed(0),
    )
    dense = torch.stack([objective.hvp(e) for e in torch.eye(objective.num_params, dtype=F64)])
    exact = torch.linalg.eigvalsh((dense + dense.T) / 2)
    # Lanczos to the engine's default relative residual (1e-3): eigenvalues to about its square
    assert found.info["eigenvalues"] == pytest.approx(exact.flip(0)[:2].tolist(), rel=1e-5)
    assert all(found.info["converged"])
    assert found.info["norms"] == pytest.approx([1.0, 1.0], rel=1e-10)
    assert found.info["curvature"] == "autograd_surrogate_hessian"
    names = list(objective.shapes)
    for direction, value in zip(found.directions, found.info["eigenvalues"]):
        v = _flat(direction, names)
        assert float((dense @ v - value * v).norm()) <= 1e-3 * abs(value) * 1.01


def test_direction_kind_refuses_a_duplicate_name():
    before = dict(DIRECTION_KINDS)
    with pytest.raises(ValueError, match=r"^direction kind 'random' is registered twice$"):
        direction_kind("random")(lambda centre: DirectionSet([], {}))
    assert DIRECTION_KINDS == before
    assert set(DIRECTION_KINDS) >= {"random", "interp", "pca", "eigen"}


def test_build_directions_refuses_an_unknown_kind(tanh_mlp):
    centre = {n: p.detach() for n, p in tanh_mlp.named_parameters()}
    with pytest.raises(
        ValueError,
        match=r"^unknown direction kind 'spiral'; known: \['eigen', 'interp', 'pca', 'random'",
    ):
        build_directions("spiral", centre)
    with pytest.raises(ValueError, match="unknown direction kind 'spiral'"):
        api.directions("spiral", tanh_mlp)


def test_a_new_kind_is_one_decorated_builder(monkeypatch, tanh_mlp):
    monkeypatch.setattr(dirs, "DIRECTION_KINDS", dict(DIRECTION_KINDS))

    @dirs.direction_kind("ones")
    def ones(centre, *, scale):
        return DirectionSet(
            [{n: scale * torch.ones_like(t) for n, t in centre.items()}], {"scale": scale}
        )

    found = api.directions("ones", tanh_mlp, scale=2.0)
    assert found.info["scale"] == 2.0
    assert found.info["norms"] == pytest.approx([2.0 * 67**0.5], rel=1e-12)
    assert "ones" not in DIRECTION_KINDS  # the real registry is untouched

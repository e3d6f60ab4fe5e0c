"""Objective: exact loss, gradient and HVPs against dense float64 references; no side effects."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from landscape import Objective, eval_mode, flatten, unflatten
from training.snn.losses import tet_loss


def dense_hessian(model, loss_fn, batches, names=None):
    """Reference: ``torch.autograd.functional.hessian`` of the per-sample-weighted loss."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = names or list(params)
    shapes = {n: params[n].shape for n in names}
    total = sum(len(y) for _, y in batches)

    def loss(theta):
        tensors = {**params, **unflatten(theta, shapes)}
        return sum(
            len(y) / total * loss_fn(functional_call(model, tensors, (x,)), y) for x, y in batches
        )

    theta = flatten({n: params[n] for n in names})
    return torch.autograd.functional.hessian(loss, theta)


def snapshot(model: nn.Module) -> tuple[dict, list, list]:
    return (
        copy.deepcopy(model.state_dict()),
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_unchanged(model: nn.Module, before: tuple[dict, list, list]) -> None:
    state, modes, flags = before
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
def test_hvp_matches_dense_hessian(tiny_snn, snn_batches, snn_loss, generator, method):
    objective = Objective(tiny_snn, snn_loss, snn_batches, hvp_method=method)
    hessian = dense_hessian(tiny_snn, snn_loss, snn_batches)
    assert hessian.abs().max() > 1e-3  # the surrogate Hessian of this SNN is not trivial
    v = torch.randn(objective.num_params, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(objective.hvp(v), hessian @ v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(objective.hvp_function()(v), hessian @ v, rtol=1e-10, atol=1e-12)


def test_double_backward_equals_forward_over_reverse(tiny_snn, snn_batches, generator):
    kwargs = dict(loss_fn=lambda o, y: tet_loss(o, y, 0.05, 1.0), batches=snn_batches)
    first = Objective(tiny_snn, hvp_method="double_backward", **kwargs)
    second = Objective(tiny_snn, hvp_method="forward_over_reverse", **kwargs)
    v = torch.randn(first.num_params, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(first.hvp(v), second.hvp(v), rtol=1e-10, atol=1e-13)


def test_hvp_is_symmetric(tiny_snn, snn_batches, snn_loss, generator):
    objective = Objective(tiny_snn, snn_loss, snn_batches)
    v, w = torch.randn(2, objective.num_params, generator=generator, dtype=torch.float64)
    hvp = objective.hvp_function()
    assert abs(torch.dot(w, hvp(v)) - torch.dot(v, hvp(w))) <= 1e-10 * hvp(v).norm() * w.norm()


def test_unequal_batches_weighted_per_sample(tiny_snn, snn_batches, snn_loss, generator):
    split = Objective(tiny_snn, snn_loss, snn_batches)
    x = torch.cat([x for x, _ in snn_batches])
    y = torch.cat([y for _, y in snn_batches])
    whole = Objective(tiny_snn, snn_loss, [(x, y)])
    v = torch.randn(split.num_params, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(split.loss(), whole.loss(), rtol=1e-12, atol=0)
    torch.testing.assert_close(split.grad(), whole.grad(), rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(split.hvp(v), whole.hvp(v), rtol=1e-10, atol=1e-13)
    assert split.num_data == 8


def test_parameter_subset_is_a_hessian_block(tiny_snn, snn_batches, snn_loss, generator):
    names = ["layers.3.0.weight", "layers.3.0.bias"]
    objective = Objective(tiny_snn, snn_loss, snn_batches, param_names=names)
    block = dense_hessian(tiny_snn, snn_loss, snn_batches, names)
    v = torch.randn(objective.num_params, generator=generator, dtype=torch.float64)
    assert objective.num_params == 6 * 3 + 3
    torch.testing.assert_close(objective.hvp(v), block @ v, rtol=1e-10, atol=1e-12)


def test_gradient_at_other_point(tanh_mlp, mlp_batches, generator):
    objective = Objective(tanh_mlp, nn.functional.cross_entropy, mlp_batches)
    theta = objective.params + 0.1 * torch.randn(
        objective.num_params, generator=generator, dtype=torch.float64
    )
    step = 1e-6 * torch.randn(objective.num_params, generator=generator, dtype=torch.float64)
    # Central difference of the loss along `step` (float64: error O(|step|^3)).
    slope = (objective.loss(theta + step) - objective.loss(theta - step)) / 2
    torch.testing.assert_close(torch.dot(objective.grad(theta), step), slope, rtol=1e-6, atol=0)


def test_model_is_never_modified(tiny_snn, snn_batches, snn_loss, generator):
    tiny_snn.train()
    tiny_snn.layers[0].eval()  # mixed flags must come back exactly
    tiny_snn.layers[3][0].bias.requires_grad_(False)
    before = snapshot(tiny_snn)
    objective = Objective(tiny_snn, snn_loss, snn_batches, dtype=torch.float32)
    v = torch.randn(objective.num_params, generator=generator)
    objective.loss(), objective.grad(), objective.hvp(v), objective.hvp_function()(v)
    objective.check_deterministic(generator)
    assert_unchanged(tiny_snn, before)
    assert objective.num_params == 123 - 3  # the frozen bias is held fixed
    assert all(p.grad is None for p in tiny_snn.parameters())
    assert next(tiny_snn.parameters()).dtype == torch.float64


def test_eval_mode_restores_flags():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.BatchNorm1d(2))
    model[1].eval()
    with eval_mode(model) as inside:
        assert not any(m.training for m in inside.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]


class _Noisy(nn.Module):
    def forward(self, x):
        return x + 0.1 * torch.randn_like(x)


def test_nondeterministic_model_is_refused(tanh_mlp, mlp_batches):
    model = nn.Sequential(tanh_mlp, _Noisy())
    objective = Objective(model, nn.functional.cross_entropy, mlp_batches)
    with pytest.raises(RuntimeError, match="not deterministic.*dropout or BatchNorm in train mode"):
        objective.check_deterministic(torch.Generator().manual_seed(0))


def test_train_mode_dropout_is_refused(mlp_batches):
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3)).double()
    objective = Objective(model, nn.functional.cross_entropy, mlp_batches, use_eval_mode=False)
    with pytest.raises(RuntimeError, match="dropout"):
        objective.check_deterministic()
    Objective(model, nn.functional.cross_entropy, mlp_batches).check_deterministic()


def test_before_forward_hook_is_called(tanh_mlp, mlp_batches):
    calls = []
    objective = Objective(
        tanh_mlp,
        nn.functional.cross_entropy,
        mlp_batches + mlp_batches,
        before_forward=calls.append,
    )
    objective.loss()
    assert calls == [tanh_mlp, tanh_mlp]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hvp_method="newton"), "hvp_method must be one of"),
        (dict(param_names=["nope.weight"]), "param_names must be a non-empty subset"),
        (dict(param_names=[]), "param_names must be a non-empty subset"),
        (dict(batches=[]), "batches must contain at least one"),
        (dict(batches=[(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))]), "non-empty batch"),
        (dict(dtype=torch.int64), "dtype must be a floating dtype"),
    ],
)
def test_constructor_errors(tanh_mlp, mlp_batches, kwargs, match):
    arguments = {
        **dict(model=tanh_mlp, loss_fn=nn.functional.cross_entropy, batches=mlp_batches),
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        Objective(**arguments)


def test_call_errors(tanh_mlp, mlp_batches):
    objective = Objective(tanh_mlp, nn.functional.cross_entropy, mlp_batches)
    with pytest.raises(ValueError, match="v must have shape"):
        objective.hvp(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="params must have shape"):
        objective.loss(torch.zeros(3, dtype=torch.float64))
    unreduced = Objective(
        tanh_mlp, lambda o, y: nn.functional.cross_entropy(o, y, reduction="none"), mlp_batches
    )
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        unreduced.loss()
    with pytest.raises(ValueError, match="loss is not finite"):
        objective.loss(torch.full((objective.num_params,), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="model has no parameters"):
        Objective(nn.Identity(), nn.functional.cross_entropy, mlp_batches)


def test_train_mode_batchnorm_does_not_mutate_the_model():
    """use_eval_mode=False runs BatchNorm on batch statistics; its buffer updates stay inside."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    ).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,)))]
    objective = Objective(model, torch.nn.functional.cross_entropy, batches, use_eval_mode=False)
    objective.loss()
    objective.grad()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key

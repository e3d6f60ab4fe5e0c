"""Batched Hessian-vector products equal single products to 1e-12 in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import HessianOperator, Objective
from training.models import build
from training.snn.losses import sdt_loss

K = 5


def _digits_batches(generator):
    x = 2 * torch.randn(10, 1, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (10,), generator=generator)
    return [(x[:6], y[:6]), (x[6:], y[6:])]  # unequal sizes: per-sample weighting


def _cnn_with_batchnorm() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 8 * 8, 10),
    )
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.double().train()  # the objective switches to eval mode


def _problems(generator):
    torch.manual_seed(0)
    digits = build("digits_snn").double()
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)).double()
    batches = _digits_batches(generator)
    return {
        "digits_snn": (digits, sdt_loss, batches),
        "cnn_batchnorm": (_cnn_with_batchnorm(), nn.functional.cross_entropy, batches),
        "mlp": (mlp, nn.functional.cross_entropy, batches),
    }


def _single(function, V):
    return torch.stack([function(column) for column in V.T], dim=1)


@pytest.mark.parametrize("name", ["digits_snn", "cnn_batchnorm", "mlp"])
@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
def test_block_equals_single_products(name, method, generator):
    model, loss_fn, batches = _problems(generator)[name]
    objective = Objective(model, loss_fn, batches, hvp_method=method)
    V = torch.randn(objective.num_params, K, generator=generator, dtype=torch.float64)
    single = _single(objective.hvp, V)
    scale = single.abs().max()
    torch.testing.assert_close(objective.hvp(V), single, rtol=0, atol=1e-12 * scale)
    if method == "double_backward":
        cached = objective.hvp_function()
        torch.testing.assert_close(cached(V), single, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("cached", [True, False])
def test_operator_matmat_counts_and_chunks(cached, generator):
    model, loss_fn, batches = _problems(generator)["digits_snn"]
    objective = Objective(model, loss_fn, batches)
    operator = HessianOperator(objective, use_cached_graph=cached, batched=True, max_block=2)
    assert not HessianOperator(objective).batched  # the CPU default: one product per column
    V = torch.randn(objective.num_params, K, generator=generator, dtype=torch.float64)
    block = operator @ V  # 3 batched passes of <= 2 columns
    assert operator.num_matvecs == K
    single = _single(lambda v: operator @ v, V)
    assert operator.num_matvecs == 2 * K
    torch.testing.assert_close(block, single, rtol=0, atol=1e-12 * single.abs().max())
    torch.testing.assert_close(operator.matmat(V), block, rtol=0, atol=1e-12 * block.abs().max())


def test_hooks_run_once_per_forward_for_a_block(generator):
    model, loss_fn, batches = _problems(generator)["mlp"]
    calls = []
    objective = Objective(model, loss_fn, batches, before_forward=lambda m: calls.append(1))
    V = torch.randn(objective.num_params, K, generator=generator, dtype=torch.float64)
    objective.hvp(V)
    assert len(calls) == len(batches)  # one forward per data batch for all K products
    calls.clear()
    objective.hvp(V, objective.params)
    assert len(calls) == len(batches)


def test_fallback_to_column_loop(generator, monkeypatch):
    model, loss_fn, batches = _problems(generator)["mlp"]
    objective = Objective(model, loss_fn, batches)
    V = torch.randn(objective.num_params, K, generator=generator, dtype=torch.float64)
    expected = _single(objective.hvp, V)
    grad = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented")
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_batching)
    torch.testing.assert_close(objective.hvp_function()(V), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(objective.hvp(V), expected, rtol=0, atol=1e-12)


def test_block_errors(generator):
    model, loss_fn, batches = _problems(generator)["mlp"]
    operator = HessianOperator(Objective(model, loss_fn, batches))
    with pytest.raises(ValueError, match="expected a block"):
        operator.matmat(torch.zeros(operator.shape[0], dtype=torch.float64))
    with pytest.raises(ValueError, match="expected a vector"):
        operator @ torch.zeros(operator.shape[0], 0, dtype=torch.float64)
    with pytest.raises(ValueError, match="max_block and block_size"):
        HessianOperator(operator.objective, max_block=0)

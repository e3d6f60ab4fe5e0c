import math

import pytest
import torch

from training import models
from training.snn.gradient_stats import (
    error_terms,
    gradient_statistics,
    optimizer_state_norm,
    update_cosine,
)
from training.snn.losses import sdt_loss, tet_loss


def test_error_terms_closed_form():
    outputs = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]], dtype=torch.float64)  # [T=2, B=1, C=2]
    terms = error_terms(outputs, torch.tensor([0]))
    p_mean = 1 / (1 + math.exp(-1.0))  # softmax([1, 0])[0]
    torch.testing.assert_close(
        terms["sdt"], torch.tensor([[p_mean - 1, 1 - p_mean]], dtype=torch.float64)
    )
    p0 = 1 / (1 + math.exp(-2.0))
    expected = torch.tensor([[[p0 - 1, 1 - p0]], [[-0.5, 0.5]]], dtype=torch.float64)
    torch.testing.assert_close(terms["tet"], expected)


def _model_and_batches(T=3, seed=0):
    torch.manual_seed(seed)
    model = models.build("digits_snn", T=T, channels=(4, 6)).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10, 1, 8, 8, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (10,), generator=g)
    return model, [(x[:6], y[:6]), (x[6:], y[6:])], x, y


def test_step_gradients_sum_to_the_full_gradient_and_model_is_untouched():
    model, batches, x, y = _model_and_batches()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = gradient_statistics(model, batches, 0.05, 1.0)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    for name, loss in (("sdt", sdt_loss(model(x), y)), ("tet", tet_loss(model(x), y, 0.05, 1.0))):
        grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
        torch.testing.assert_close(stats[name]["gradient"], grad, rtol=0, atol=1e-10)
        assert stats[name]["grad_norm"] == pytest.approx(float(grad.norm()), rel=1e-10)
        layers = stats[name]["layer_grad_norm"]
        assert math.fsum(v**2 for v in layers.values()) == pytest.approx(float(grad.norm()) ** 2)
        cos = torch.tensor(stats[name]["g_cos"], dtype=torch.float64)
        torch.testing.assert_close(cos.diagonal(), torch.ones(3, dtype=torch.float64))
    assert stats["num_samples"] == 10 and len(stats["step_acc"]) == 3


def test_one_time_step_sdt_and_tet_without_mse_coincide():
    model, batches, _, _ = _model_and_batches(T=1)
    stats = gradient_statistics(model, batches, 0.0, 1.0)
    for key in ("error_norm", "g_norm", "grad_norm"):
        assert stats["sdt"][key] == pytest.approx(stats["tet"][key], rel=1e-12)
    assert stats["output_variance"] == 0.0


def test_sdt_error_term_is_shared_over_time():
    model, batches, _, _ = _model_and_batches()
    stats = gradient_statistics(model, batches, 0.05, 1.0)
    assert len(set(stats["sdt"]["error_norm"])) == 1


def test_optimizer_norms_and_update_cosine():
    w = torch.nn.Parameter(torch.ones(3))
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    assert math.isnan(optimizer_state_norm(sgd))
    w.grad = torch.tensor([3.0, 4.0, 0.0])
    sgd.step()
    assert optimizer_state_norm(sgd) == pytest.approx(5.0)
    a, b = torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert update_cosine(a, b, b + torch.tensor([0.0, 2.0], dtype=torch.float64)) == 0.0
    assert update_cosine(a, b, 2 * b) == pytest.approx(1.0)

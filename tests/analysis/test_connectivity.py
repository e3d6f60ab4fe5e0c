"""Paths, curves, barriers, BatchNorm statistics, alignment and the smooth forward, in float64."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from analysis.connectivity import (
    PathEvaluator,
    barrier,
    batch_norm_statistics,
    fit_curve,
    midpoint,
    path_point,
    permute,
    random_permutations,
    spec_of,
    split_state,
    weight_matching,
)
from training.data.datasets import TensorLoader
from training.models import build
from training.snn.losses import get_loss
from training.snn.neurons import LIF
from training.snn.smooth import smooth_model

# A tiny member of every registered model, with its static input shape.
FAMILIES = {
    "mnist1d_snn": (dict(channels=(4, 3), image_size=8, T=2), (1, 1, 8)),
    "digits_snn": (dict(channels=(3, 4), T=2), (1, 8, 8)),
    "spiking_mlp": (dict(hidden=(5, 4), T=2), (1, 8, 8)),
    "vggsnn": (dict(width=0.05, image_size=16, T=2, num_classes=3), (2, 16, 16)),
    "vggsnn_woap": (dict(width=0.05, image_size=16, T=2, num_classes=3), (2, 16, 16)),
    "resnet19": (dict(width=0.05, T=2, num_classes=3), (3, 8, 8)),
    "spiking_resnet34": (dict(width=0.05, T=1, num_classes=3), (3, 32, 32)),
    "sew_resnet34": (dict(width=0.05, T=1, num_classes=3), (3, 32, 32)),
}


def _model(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build(name, **FAMILIES[name][0]).double()
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator, dtype=torch.float64))
                module.running_var.copy_(
                    torch.rand(n, generator=generator, dtype=torch.float64) + 0.5
                )
                module.weight.copy_(torch.rand(n, generator=generator, dtype=torch.float64) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator, dtype=torch.float64) * 0.1)
    return model


def _inputs(name: str, batch: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 3 * torch.rand(batch, *FAMILIES[name][1], generator=generator, dtype=torch.float64)


# --- paths and barriers ---


def test_bezier_and_polychain_ends_are_exact_and_the_midpoint_bend_is_the_line(generator):
    a = {"w": torch.randn(5, 3, generator=generator, dtype=torch.float64)}
    b = {"w": torch.randn(5, 3, generator=generator, dtype=torch.float64)}
    bend = {"w": torch.randn(5, 3, generator=generator, dtype=torch.float64)}
    for kind in ("bezier", "polychain"):
        assert torch.equal(path_point(kind, 0.0, a, bend, b)["w"], a["w"])
        assert torch.equal(path_point(kind, 1.0, a, bend, b)["w"], b["w"])
        for t in (0.1, 0.37, 0.5, 0.8):
            line = path_point("line", t, a, None, b)["w"]
            curve = path_point(kind, t, a, midpoint(a, b), b)["w"]
            torch.testing.assert_close(curve, line, rtol=1e-14, atol=1e-14)
    assert torch.allclose(path_point("polychain", 0.5, a, bend, b)["w"], bend["w"])
    # The Bezier curve at 1/2 is a quarter of each end and half of the bend.
    expected = 0.25 * a["w"] + 0.5 * bend["w"] + 0.25 * b["w"]
    torch.testing.assert_close(path_point("bezier", 0.5, a, bend, b)["w"], expected)


def test_barrier_of_a_hand_made_profile():
    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    values = [1.0, 2.5, 3.0, 2.0, 2.0]  # the line between the ends: 1.25, 1.5, 1.75
    found = barrier(ts, values)
    assert found.height == pytest.approx(1.5) and found.t == 0.5 and found.peak == 3.0
    assert found.start == 1.0 and found.end == 2.0
    assert barrier([0.0, 0.5, 1.0], [1.0, 0.5, 1.0]).height == 0.0  # below the line: ends max
    with pytest.raises(ValueError, match="from 0 to 1"):
        barrier([0.1, 1.0], [1.0, 2.0])


# --- alignment ---


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_permuted_copy_computes_the_same_function(name):
    model = _model(name, seed=1)
    spec = spec_of(model, name)
    perms = random_permutations(spec, torch.Generator().manual_seed(3))
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    twin = copy.deepcopy(model)
    twin.load_state_dict(permute(spec, perms, model.state_dict()))
    x = _inputs(name)
    for mode in ("eval", "train"):
        model.train(mode == "train"), twin.train(mode == "train")
        with torch.no_grad():
            expected, found = model(x), twin(x)
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_weight_matching_recovers_a_random_permutation(name):
    model = _model(name, seed=2)
    spec = spec_of(model, name)
    perms = random_permutations(spec, torch.Generator().manual_seed(5))
    state = model.state_dict()
    permuted = permute(spec, perms, state)
    found = weight_matching(spec, state, permuted, seed=0)
    assert found.converged
    for p, perm in perms.items():
        assert torch.equal(found.perms[p], torch.argsort(perm)), p
    aligned = permute(spec, found.perms, permuted)
    assert all(torch.equal(aligned[k], v) for k, v in state.items())
    assert found.objective >= found.identity_objective


def test_every_registered_model_has_a_spec_and_an_unknown_one_is_refused():
    from training.models import names

    assert sorted(FAMILIES) == names()
    with pytest.raises(Exception, match="pass --no-align"):
        spec_of(build("spiking_mlp"), "not_a_model")


# --- BatchNorm statistics ---


def test_recomputed_statistics_are_the_exact_moments_of_each_batch_norm_input():
    name = "mnist1d_snn"
    model = _model(name, seed=4)
    x = _inputs(name, batch=10)
    batches = [(x[:4], None), (x[4:], None)]
    found = batch_norm_statistics(model, batches)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Reference: capture each BN's inputs on a train-mode copy (same batches), then torch.var_mean.
    work, captured = copy.deepcopy(model).train(), {}
    for module_name, module in work.named_modules():
        if isinstance(module, nn.BatchNorm1d):
            module.register_forward_pre_hook(
                lambda m, i, n=module_name: captured.setdefault(n, []).append(i[0].detach())
            )
    with torch.no_grad():
        for batch, _ in batches:
            work(batch.unsqueeze(0).expand(2, *batch.shape).contiguous())
    assert set(captured) == {k.rsplit(".", 1)[0] for k in found}
    for module_name, inputs in captured.items():
        joined = torch.cat([i.transpose(0, 1).flatten(1) for i in inputs], dim=1)  # [C, N]
        var, mean = torch.var_mean(joined, dim=1, correction=1)
        torch.testing.assert_close(
            found[f"{module_name}.running_mean"], mean, rtol=1e-12, atol=1e-12
        )
        torch.testing.assert_close(found[f"{module_name}.running_var"], var, rtol=1e-10, atol=1e-12)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


# --- the smooth forward ---


def test_the_smooth_model_differs_only_in_the_spike_and_approaches_the_hard_one():
    name = "mnist1d_snn"
    # Train mode: batch statistics keep every layer's membrane near the threshold.
    model = _model(name, seed=6).train()
    x = _inputs(name)
    smooth = smooth_model(model)
    assert all(torch.equal(smooth.state_dict()[k], v) for k, v in model.state_dict().items())
    assert [type(m).__name__ for m in model.modules() if isinstance(m, LIF)] == ["LIF", "LIF"]
    with torch.no_grad():
        hard, soft = model(x), smooth(x)
        sharp = smooth_model(model, alpha=1e-9)(x)
    assert not torch.allclose(hard, soft)
    torch.testing.assert_close(sharp, hard, rtol=0, atol=1e-12)


def test_the_smooth_step_integrates_the_surrogate_derivative():
    from training.snn.neurons import SURROGATES, surrogate_derivative, surrogate_step

    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    for name in SURROGATES:
        for alpha in (None, 0.7):
            (grad,) = torch.autograd.grad(surrogate_step(x, name, alpha).sum(), x)
            torch.testing.assert_close(
                grad, surrogate_derivative(x.detach(), name, alpha), rtol=1e-12, atol=1e-12
            )
        assert float(surrogate_step(torch.tensor(-50.0, dtype=torch.float64), name)) < 0.01
        assert float(surrogate_step(torch.tensor(50.0, dtype=torch.float64), name)) > 0.99


# --- a curve fit and a profile ---


def _data(n: int = 24):
    generator = torch.Generator().manual_seed(9)
    x = 3 * torch.rand(n, 1, 1, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (n,), generator=generator)
    return x, y


def test_fitting_a_curve_lowers_its_loss_and_resumes_to_the_same_bend():
    a, b = _model("mnist1d_snn", 1), _model("mnist1d_snn", 2)
    (start, _), (end, _) = split_state(a), split_state(b)
    x, y = _data()
    loader = TensorLoader(x, y, 8, shuffle=True, seed=0)
    options = dict(epochs=3, lr=0.01, seed=3)
    loss = get_loss("sdt", 0.05, 1.0)
    steps = list(fit_curve("bezier", a, start, end, loader, loss, **options))
    assert [s.epoch for s in steps] == [1, 2, 3]
    resumed = list(fit_curve("bezier", a, start, end, loader, loss, resume=steps[0], **options))
    for k, v in steps[-1].middle.items():
        torch.testing.assert_close(resumed[-1].middle[k], v, rtol=1e-12, atol=1e-12)
    assert not torch.equal(
        steps[-1].middle["classifier.1.weight"], midpoint(start, end)["classifier.1.weight"]
    )
    assert all(torch.equal(a.state_dict()[k], v) for k, v in split_state(a)[0].items())


def test_a_profile_at_the_ends_is_the_ends_evaluation():
    a, b = _model("mnist1d_snn", 1), _model("mnist1d_snn", 2)
    x, y = _data()
    evaluator = PathEvaluator(a, TensorLoader(x, y, 8), [(x, y)], 0.05, 1.0)
    rows = list(evaluator.profile("line", [0.0, 0.5, 1.0], (split_state(a), split_state(b))))
    assert len(rows) == 3 * 4
    first = {(r["bn"], r["spikes"]): r for r in rows if r["t"] == 0.0}
    from training.runs.epoch import evaluate

    with torch.no_grad():
        found = evaluate(a, TensorLoader(x, y, 8), 0.05, 1.0)
    assert first["interpolated", "hard"]["l_sdt"] == pytest.approx(found["l_sdt"], rel=1e-12)
    assert np.isfinite([r["l_tet"] for r in rows]).all()

"""The fast training paths against their plain references, in float64.

- ``lif_multistep_fused`` (the ``LIF`` module's default) vs ``lif_multistep``: values, gradients,
  Hessian-vector products through a small SNN (the regression test for a silently wrong H*v from a
  non-differentiable fused backward), torch.func forward-over-reverse, vmap and forward-mode AD.
- The static stem (``SeqToANN`` on input expanded over T) vs materialized copies: outputs,
  gradients and BatchNorm running statistics in train and eval mode, for whole models.
"""

import copy

import pytest
import torch
import torch.func as tf
from torch import nn

from training import models
from training.models.layers import SeqToANN
from training.snn import neurons
from training.snn.losses import tet_loss
from training.snn.neurons import LIF, SURROGATES, lif_multistep, lif_multistep_fused

NAMES = sorted(SURROGATES)
TOL = {"rtol": 1e-12, "atol": 1e-12}


def _currents(shape, generator, scale=1.5):
    return (
        torch.randn(*shape, dtype=torch.float64, generator=generator) * scale + 0.6
    ).requires_grad_()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("alpha", [None, 0.3, 2.5])
def test_in_place_surrogates_are_bit_identical(name, alpha):
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    width = SURROGATES[name][1] if alpha is None else alpha
    in_place = neurons._SURROGATES_INPLACE[name](x.clone(), width)
    assert torch.equal(in_place, neurons.surrogate_derivative(x, name, alpha))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tau, v_threshold, alpha", [(0.5, 1.0, None), (0.8, 0.5, 0.5)])
def test_fused_values_and_gradients_equal_eager(name, tau, v_threshold, alpha):
    g = torch.Generator().manual_seed(0)
    for T in (1, 5):
        x = _currents((T, 6, 7), g)
        grad_out = torch.randn(T, 6, 7, dtype=torch.float64, generator=g)
        eager = lif_multistep(x, tau, v_threshold, name, alpha)
        fused = lif_multistep_fused(x, tau, v_threshold, name, alpha)
        assert torch.equal(fused, eager)
        assert 0 < eager.mean() < 1  # both spiking and silent neurons
        (expected,) = torch.autograd.grad(eager, x, grad_out)
        (actual,) = torch.autograd.grad(fused, x, grad_out)
        torch.testing.assert_close(actual, expected, **TOL)


def test_fused_gradient_flows_through_the_reset():
    """Only the non-detached reset u * (1 - s) makes dL/dx[0] depend on s[0]'s surrogate."""
    x = torch.tensor([[1.5], [0.9]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(lif_multistep_fused(x)[1].sum(), x)
    (expected,) = torch.autograd.grad(lif_multistep(x)[1].sum(), x)
    torch.testing.assert_close(grad, expected, **TOL)
    assert grad[0].abs() > 0


def test_fused_accepts_expanded_and_channels_last_input():
    g = torch.Generator().manual_seed(1)
    image = _currents((3, 4, 5, 5), g).detach().to(memory_format=torch.channels_last)
    for x in (image.unsqueeze(0).expand(4, *image.shape), image.view(3, 1, 4, 5, 5)):
        x = x.detach().requires_grad_()
        grad_out = torch.randn(x.shape, dtype=torch.float64, generator=g)
        eager, fused = lif_multistep(x), lif_multistep_fused(x)
        assert torch.equal(fused, eager)
        expected = torch.autograd.grad(eager, x, grad_out)[0]
        torch.testing.assert_close(torch.autograd.grad(fused, x, grad_out)[0], expected, **TOL)


class _TinySNN(nn.Module):
    """Linear -> LIF -> Linear -> LIF -> Linear on ``[T, B, 5]``."""

    def __init__(self, use_fused: bool, surrogate: str) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 7), nn.Linear(7, 6), nn.Linear(6, 3)
        self.lif1 = LIF(surrogate=surrogate, use_fused=use_fused)
        self.lif2 = LIF(surrogate=surrogate, use_fused=use_fused)

    def forward(self, x):
        return self.fc3(self.lif2(self.fc2(self.lif1(self.fc1(x)))))


def _tiny_problem(surrogate, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module init draws from the global RNG
        torch.manual_seed(seed)
        fused = _TinySNN(True, surrogate).double()
    for p in fused.parameters():
        p.data.mul_(2.0)  # enough spikes in both layers
    eager = _TinySNN(False, surrogate).double()
    eager.load_state_dict(fused.state_dict())
    x = torch.rand(4, 8, 5, dtype=torch.float64, generator=g) * 2
    y = torch.randint(0, 3, (8,), generator=g)
    v = {k: torch.randn(p.shape, dtype=p.dtype, generator=g) for k, p in fused.named_parameters()}
    return fused, eager, x, y, v


def _double_backward_hvp(model, x, y, v):
    params = dict(model.named_parameters())
    loss = tet_loss(model(x), y, 0.05, 1.0)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    hvp = torch.autograd.grad(grads, list(params.values()), [v[k] for k in params])
    return torch.cat([h.flatten() for h in hvp])


@pytest.mark.parametrize("name", NAMES)
def test_hvp_through_fused_lif_equals_eager(name):
    fused, eager, x, y, v = _tiny_problem(name)
    assert fused.lif1.use_fused and LIF().use_fused  # the fused path is the default
    expected = _double_backward_hvp(eager, x, y, v)
    actual = _double_backward_hvp(fused, x, y, v)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


class _FusedWithoutFallback(torch.autograd.Function):
    """The classic bug: BPTT in differentiable ops, but from tensors saved under no_grad."""

    @staticmethod
    def forward(ctx, x, tau, v_threshold, surrogate, alpha):
        spikes, h = neurons._lif_forward_no_grad(x, tau, v_threshold)
        ctx.save_for_backward(h, spikes)
        ctx.options = (tau, v_threshold, surrogate, alpha)
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        h, spikes = ctx.saved_tensors
        tau, v_threshold, surrogate, alpha = ctx.options
        derivative = neurons.surrogate_derivative(h - v_threshold, surrogate, alpha)
        carry = tau * ((1 - spikes) - h * derivative)
        grads = [grad_spikes[-1] * derivative[-1]]
        for t in range(h.shape[0] - 2, -1, -1):
            grads.insert(0, grad_spikes[t] * derivative[t] + grads[0] * carry[t])
        return torch.stack(grads), None, None, None, None


def test_hvp_test_detects_a_non_differentiable_backward(monkeypatch):
    """Such a backward gives the right gradient, but H*v silently misses second-order terms."""
    fused, eager, x, y, v = _tiny_problem("triangle")
    monkeypatch.setattr(neurons, "_FusedLIF", _FusedWithoutFallback)
    loss = tet_loss(fused(x), y, 0.05, 1.0)
    expected_loss = tet_loss(eager(x), y, 0.05, 1.0)
    first = torch.autograd.grad(loss, list(fused.parameters()))
    for actual, expected in zip(
        first, torch.autograd.grad(expected_loss, list(eager.parameters()))
    ):
        torch.testing.assert_close(actual, expected, **TOL)
    broken = _double_backward_hvp(fused, x, y, v)
    expected = _double_backward_hvp(eager, x, y, v)
    assert (broken - expected).norm() > 1e-3 * expected.norm()


@pytest.mark.parametrize("name", NAMES)
def test_forward_over_reverse_equals_double_backward(name):
    fused, _, x, y, v = _tiny_problem(name)
    params = {k: p.detach() for k, p in fused.named_parameters()}

    def loss(p):
        return tet_loss(tf.functional_call(fused, p, (x,)), y, 0.05, 1.0)

    _, hvp = tf.jvp(tf.grad(loss), (params,), (v,))
    actual = torch.cat([hvp[k].flatten() for k in params])
    torch.testing.assert_close(actual, _double_backward_hvp(fused, x, y, v), **TOL)


def test_vmap_and_forward_ad_through_lif_module():
    fused, eager, x, y, v = _tiny_problem("arctan")
    batched = tf.vmap(fused, in_dims=1, out_dims=1)(x)  # one sample at a time, vmapped
    torch.testing.assert_close(batched, eager(x), **TOL)
    tangent = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(3))
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        jvp = torch.autograd.forward_ad.unpack_dual(fused(dual)).tangent
    expected = tf.jvp(eager, (x,), (tangent,))[1]
    torch.testing.assert_close(jvp, expected, **TOL)


def _train_steps(model, x, y, num_steps=2):
    """Loss, parameter gradients of the last step, and the state dict after ``num_steps``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(num_steps):
        optimizer.zero_grad()
        loss = tet_loss(model(x), y, 0.05, 1.0)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        optimizer.step()
    return loss.detach(), grads, model.state_dict()


def _assert_same(a, b):
    assert list(a) == list(b)
    for key in b:
        torch.testing.assert_close(a[key], b[key], **TOL, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize(
    "name, options", [("resnet19", {"width": 1 / 16}), ("digits_snn", {}), ("spiking_mlp", {})]
)
def test_static_stem_equals_repeated_input(name, options):
    g = torch.Generator().manual_seed(4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        stem = models.build(name, T=3, **options).double()
    plain = copy.deepcopy(stem)
    plain.use_static_stem = False
    assert stem.use_static_stem
    channels = 3 if name == "resnet19" else 1
    x = torch.randn(6, channels, 8, 8, dtype=torch.float64, generator=g) * 2
    y = torch.randint(0, 10, (6,), generator=g)
    loss_s, grads_s, state_s = _train_steps(stem, x, y)
    loss_p, grads_p, state_p = _train_steps(plain, x, y)
    torch.testing.assert_close(loss_s, loss_p, **TOL)
    _assert_same(grads_s, grads_p)
    _assert_same(state_s, state_p)  # weights after the steps and BN running statistics
    stem.eval(), plain.eval()
    torch.testing.assert_close(stem(x), plain(x), **TOL)


@pytest.mark.parametrize(
    "options", [{}, {"momentum": None}, {"track_running_stats": False}], ids=str
)
def test_seq_to_ann_batch_norm_over_copies(options):
    """Values, gradients (input included) and running stats; B=1 has one value per channel."""
    g = torch.Generator().manual_seed(5)
    layer = SeqToANN(nn.Linear(4, 3), nn.BatchNorm1d(3, **options)).double()
    reference = copy.deepcopy(layer)
    for batch in (1, 5):
        image = torch.randn(batch, 4, dtype=torch.float64, generator=g).requires_grad_()
        out = layer(image.unsqueeze(0).expand(4, batch, 4))
        assert out.stride(0) == 0  # computed once
        expected = reference(image.unsqueeze(0).repeat(4, 1, 1))
        torch.testing.assert_close(out, expected, **TOL)
        weights = torch.randn(out.shape, dtype=torch.float64, generator=g)
        grads = torch.autograd.grad((out * weights).sum(), [image, *layer.parameters()])
        expected_grads = torch.autograd.grad(
            (expected * weights).sum(), [image, *reference.parameters()]
        )
        for actual, wanted in zip(grads, expected_grads):
            torch.testing.assert_close(actual, wanted, **TOL)
        _assert_same(layer.state_dict(), reference.state_dict())


def test_static_stem_skips_modules_that_are_not_per_sample():
    layer = SeqToANN(nn.Dropout(0.5))
    out = layer(torch.ones(1, 2000).unsqueeze(0).expand(3, 1, 2000))
    assert out.stride(0) != 0 and not torch.equal(out[0], out[1])  # a mask per time step


def test_static_stem_under_torch_func_equals_double_backward():
    """Forward-over-reverse H*v of a ResNet-19 in eval mode (engine setting), stem and LIF on."""
    g = torch.Generator().manual_seed(6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.build("resnet19", width=1 / 16, T=2).double().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=g) * 2
    y = torch.randint(0, 10, (3,), generator=g)
    params = {k: p.detach() for k, p in model.named_parameters()}
    v = {k: torch.randn(p.shape, dtype=p.dtype, generator=g) for k, p in params.items()}

    def loss(p):
        return tet_loss(tf.functional_call(model, p, (x,)), y, 0.05, 1.0)

    _, hvp = tf.jvp(tf.grad(loss), (params,), (v,))
    expected = _double_backward_hvp(model, x, y, v)
    torch.testing.assert_close(torch.cat([hvp[k].flatten() for k in params]), expected, **TOL)


def test_batched_backward_and_vectorized_hessian():
    """``is_grads_batched`` (legacy vmap over the backward) and ``hessian(vectorize=True)``."""
    g = torch.Generator().manual_seed(7)
    x = _currents((3, 4, 5), g).detach()
    cotangents = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=g)
    leaf = x.clone().requires_grad_()
    (batched,) = torch.autograd.grad(LIF()(leaf), leaf, cotangents, is_grads_batched=True)
    expected = [torch.autograd.grad(lif_multistep(leaf), leaf, v)[0] for v in cotangents]
    torch.testing.assert_close(batched, torch.stack(expected), **TOL)

    def loss(w, use_fused=True):
        return (LIF(use_fused=use_fused)(x * w) * w).sum() + LIF(use_fused=use_fused)(x * w).sum()

    w = torch.randn(5, dtype=torch.float64, generator=g)
    hessian = torch.autograd.functional.hessian(loss, w, vectorize=True)
    expected = torch.autograd.functional.hessian(lambda v: loss(v, False), w)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(hessian, expected, **TOL)

import pytest
import torch
import torch.func as tf

from training.snn.neurons import LIF, SURROGATES, lif_multistep, spike, surrogate_derivative

NAMES = sorted(SURROGATES)


def test_lif_matches_hand_computed_sequence():
    # u = 0.5 u + I; spike iff u > 1; hard reset.
    x = torch.tensor([0.8, 0.8, 0.8, 1.0, 2.5, 0.0], dtype=torch.float64).view(6, 1)
    # u: 0.8 -> 1.2 (spike, reset 0) -> 0.8 -> 1.4 (spike) -> 2.5 (spike) -> 0.0
    expected = torch.tensor([0, 1, 0, 1, 1, 0], dtype=torch.float64).view(6, 1)
    assert torch.equal(lif_multistep(x), expected)


def test_threshold_is_strict():
    assert lif_multistep(torch.ones(1, 3, dtype=torch.float64)).sum() == 0  # u = 1 does not fire


def test_zero_input_never_spikes():
    assert LIF()(torch.zeros(8, 4, 5)).sum() == 0


def test_no_state_leaks_between_calls():
    layer = LIF()
    x = torch.randn(5, 3, 7, generator=torch.Generator().manual_seed(1)) * 2
    assert torch.equal(layer(x), layer(x))


def test_reset_is_not_detached():
    # Gradient must flow through u * (1 - s) into the spike: compare to a detached-reset version.
    x = torch.tensor([[1.5], [0.9]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(lif_multistep(x)[1].sum(), x)

    def detached(x):
        u1 = x[0]
        s1 = spike(u1 - 1)
        u = u1 * (1 - s1.detach())
        return spike(0.5 * u + x[1] - 1)

    (grad_detached,) = torch.autograd.grad(detached(x).sum(), x)
    assert not torch.allclose(grad, grad_detached)


@pytest.mark.parametrize("name", NAMES)
def test_surrogate_gradcheck_and_gradgradcheck(name):
    x = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 0.6
    x.requires_grad_()

    def derivative(z):
        return torch.autograd.grad(spike(z, name).sum(), z, create_graph=True)[0]

    assert torch.autograd.gradcheck(derivative, (x,))
    assert torch.autograd.gradgradcheck(lambda z: spike(z, name), (x,))


PRIMITIVES = {  # smooth functions whose derivative is each surrogate
    "triangle": lambda x: torch.where(
        x < -1,
        0.0,
        torch.where(x < 0, (x + 1) ** 2 / 2, torch.where(x < 1, 1 - (1 - x) ** 2 / 2, 1.0)),
    ),
    "sigmoid": lambda x: torch.sigmoid(4 * x),
    "arctan": lambda x: torch.atan(torch.pi / 2 * 2 * x) / torch.pi + 0.5,
}


@pytest.mark.parametrize("name", NAMES)
def test_surrogate_backward_is_derivative_of_its_primitive(name):
    x = torch.linspace(-1.7, 1.7, 40, dtype=torch.float64).requires_grad_()  # avoids the kinks
    (grad,) = torch.autograd.grad(spike(x, name).sum(), x)
    h = 1e-6
    finite_difference = (PRIMITIVES[name](x.detach() + h) - PRIMITIVES[name](x.detach() - h)) / (
        2 * h
    )
    torch.testing.assert_close(grad, finite_difference, rtol=0, atol=1e-8)


def test_triangle_matches_official_zif_and_gamma():
    x = torch.linspace(-2, 2, 81, dtype=torch.float64)
    for gamma in (0.5, 1.0):
        official = (1 / gamma) * (1 / gamma) * (gamma - x.abs()).clamp(min=0)
        torch.testing.assert_close(
            surrogate_derivative(x, "triangle", gamma), official, rtol=0, atol=0
        )


def _tiny_snn_loss(w1, w2, x, y):
    h = lif_multistep(torch.einsum("tbi,oi->tbo", x, w1))
    out = torch.einsum("tbh,ch->tbc", h, w2)
    return torch.nn.functional.cross_entropy(out.mean(0), y)


@pytest.mark.parametrize("name", NAMES)
def test_forward_over_reverse_equals_double_backward(name):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 6, 5, dtype=torch.float64, generator=g) * 2
    y = torch.randint(0, 3, (6,), generator=g)
    w1 = torch.randn(7, 5, dtype=torch.float64, generator=g)
    w2 = torch.randn(3, 7, dtype=torch.float64, generator=g)
    v1, v2 = torch.randn_like(w1), torch.randn_like(w2)
    loss = lambda a, b: _tiny_snn_loss(a, b, x, y) + 0 * spike(a, name).sum()  # noqa: E731
    _, hvp_forward = tf.jvp(tf.grad(loss, argnums=(0, 1)), (w1, w2), (v1, v2))
    params = [w1.clone().requires_grad_(), w2.clone().requires_grad_()]
    grads = torch.autograd.grad(loss(*params), params, create_graph=True)
    hvp_backward = torch.autograd.grad(grads, params, (v1, v2))
    for a, b in zip(hvp_forward, hvp_backward):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hvp_is_symmetric_on_small_snn():
    from training.models import build
    from training.snn.losses import tet_loss

    torch.manual_seed(0)
    model = build("spiking_mlp", hidden=(6,), T=3).double().eval()
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64) * 3
    y = torch.arange(8) % 10
    params = {k: p.detach().requires_grad_() for k, p in model.named_parameters()}

    def loss(p):
        return tet_loss(tf.functional_call(model, p, (x,)), y, 0.05, 1.0)

    g = torch.Generator().manual_seed(2)
    v = {k: torch.randn(p.shape, dtype=p.dtype, generator=g) for k, p in params.items()}
    w = {k: torch.randn(p.shape, dtype=p.dtype, generator=g) for k, p in params.items()}
    grads = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
    hv = torch.autograd.grad(grads, list(params.values()), list(v.values()), retain_graph=True)
    hw = torch.autograd.grad(grads, list(params.values()), list(w.values()))
    w_hv = sum((a * b).sum() for a, b in zip(w.values(), hv))
    v_hw = sum((a * b).sum() for a, b in zip(v.values(), hw))
    assert abs(w_hv - v_hw) <= 1e-10 * max(1.0, abs(w_hv))
    assert abs(w_hv) > 1e-6  # a non-trivial product


def test_vmap_over_spike():
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    grads = tf.vmap(tf.grad(lambda z: spike(z).sum()))(x)
    torch.testing.assert_close(grads, surrogate_derivative(x))


def test_bad_surrogate_name():
    with pytest.raises(ValueError, match="unknown surrogate 'relu'"):
        LIF(surrogate="relu")
    with pytest.raises(ValueError, match="alpha must be > 0"):
        LIF(alpha=0.0)

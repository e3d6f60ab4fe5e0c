"""Equivalence with SpikingJelly 2.0.0's LIFNode (the reference notes, section 8.6), float64."""

import pytest
import torch

from training.snn.losses import sdt_loss, tet_loss
from training.snn.neurons import LIF

sj = pytest.importorskip("spikingjelly.activation_based", reason="spikingjelly not installed")
from spikingjelly.activation_based import neuron, surrogate  # noqa: E402

SURROGATES = [
    ("triangle", 1.0, lambda: surrogate.PiecewiseQuadratic(alpha=1.0)),
    ("triangle", 0.5, lambda: surrogate.PiecewiseQuadratic(alpha=2.0)),
    ("sigmoid", 4.0, lambda: surrogate.Sigmoid(alpha=4.0)),
    ("arctan", 2.0, lambda: surrogate.ATan(alpha=2.0)),
]


class _Net(torch.nn.Module):
    def __init__(self, spiking: torch.nn.Module):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 8).double()
        self.spiking = spiking
        self.fc2 = torch.nn.Linear(8, 3).double()

    def forward(self, x):  # x [T, B, 6]
        return self.fc2(self.spiking(self.fc1(x)))


def _nets(name, alpha, make_surrogate):
    torch.manual_seed(0)
    ours = _Net(LIF(tau=0.5, v_threshold=1.0, surrogate=name, alpha=alpha))
    ref = _Net(
        neuron.LIFNode(
            tau=2.0,
            decay_input=False,
            v_reset=0.0,
            v_threshold=1.0,
            surrogate_function=make_surrogate(),
            step_mode="m",
        )
    )
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _grad_and_hvp(net, loss_fn, x, y, v):
    params = list(net.parameters())
    out = net(x)
    loss = loss_fn(out, y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hvp = torch.autograd.grad(grads, params, v)
    return (
        out.detach(),
        torch.cat([g.flatten() for g in grads]).detach(),
        torch.cat([h.flatten() for h in hvp]),
    )


@pytest.mark.parametrize(
    "loss_fn", [sdt_loss, lambda o, y: tet_loss(o, y, 0.05, 1.0)], ids=["sdt", "tet"]
)
@pytest.mark.parametrize(
    "name,alpha,make_surrogate", SURROGATES, ids=["tri1", "tri0.5", "sig", "atan"]
)
def test_outputs_gradients_and_hvps_match_spikingjelly(name, alpha, make_surrogate, loss_fn):
    ours, ref = _nets(name, alpha, make_surrogate)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, 6, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 3, (4,), generator=g)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in ours.parameters()]
    a, b = _grad_and_hvp(ours, loss_fn, x, y, v), _grad_and_hvp(ref, loss_fn, x, y, v)
    for mine, theirs in zip(a, b):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)
    assert b[0].abs().sum() > 0 and b[2].abs().sum() > 0

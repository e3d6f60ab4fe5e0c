"""The private torch APIs of training/torch_internals.py still exist and mean what we rely on.

If one of these fails after a torch upgrade, fix training/torch_internals.py before training
anything: the fused LIF and the static stem would otherwise run on wrong assumptions.
"""

import torch
import torch.autograd.forward_ad as forward_ad

from training.snn.torch_internals import forward_ad_active, functorch_transforms_active, is_batched


def test_private_attributes_exist():
    assert callable(torch._C._are_functorch_transforms_active)
    assert isinstance(torch._C._are_functorch_transforms_active(), bool)
    assert callable(torch._C._dispatch_keys)
    assert isinstance(torch._C._dispatch_keys(torch.zeros(1)), torch._C.DispatchKeySet)
    assert isinstance(forward_ad._current_level, int)


def test_functorch_transforms_active_inside_every_transform():
    seen = []

    def probe(x):
        seen.append(functorch_transforms_active())
        return (x * x).sum()

    x = torch.ones(3)
    assert functorch_transforms_active() is False
    torch.func.vmap(probe)(torch.ones(2, 3))
    torch.func.grad(probe)(x)
    torch.func.jvp(probe, (x,), (x,))
    torch.func.vjp(probe, x)
    assert seen == [True] * 4
    assert functorch_transforms_active() is False
    probe(x)  # plain autograd is not a transform
    assert seen[-1] is False


def test_forward_ad_active_only_inside_a_dual_level():
    assert forward_ad_active() is False
    with forward_ad.dual_level():
        assert forward_ad_active() is True
    assert forward_ad_active() is False


def test_is_batched_under_vmap_and_batched_grads():
    flags = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, grad):
            flags.append(is_batched(grad))
            return grad

    assert is_batched(torch.zeros(3)) is False
    torch.func.vmap(lambda x: flags.append(is_batched(x)) or x)(torch.zeros(2, 3))
    x = torch.ones(3, requires_grad=True)
    y = Probe.apply(x)
    torch.autograd.grad(y, x, torch.ones(3), retain_graph=True)
    torch.autograd.grad(y, x, torch.eye(3), is_grads_batched=True)
    assert flags == [True, False, True]

"""The paper-scale models: exact parameter counts, registry-driven forward/backward, structure."""

import pytest
import torch

from training import models
from training.models.resnet import BasicBlock
from training.snn.neurons import LIF

# name -> (tiny options, input shape); a 5-D input is a time-major sequence [T, B, C, H, W]
TINY = {
    "resnet19": ({"width": 1 / 32}, (2, 3, 8, 8)),
    "vggsnn": ({"width": 1 / 32, "image_size": 16}, (2, 2, 2, 16, 16)),
    "vggsnn_woap": ({"width": 1 / 32, "image_size": 16}, (2, 2, 2, 16, 16)),
    "spiking_resnet34": ({"width": 1 / 32}, (2, 3, 32, 32)),
    "sew_resnet34": ({"width": 1 / 32}, (2, 3, 32, 32)),
}


def num_parameters(name: str, **options) -> int:
    with torch.device("meta"):  # full-size models: no memory, no init cost
        model = models.build(name, **options)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("resnet19", {"num_classes": 10}, 12_630_858),
        ("resnet19", {"num_classes": 100}, 12_653_988),
        ("vggsnn", {"num_classes": 10}, 9_271_498),
        # VGGSNNwoAP has VGGSNN's eight conv+BN layers with stride 2 instead of AvgPool2d (which
        # has no parameters), and the same 48 -> 3 spatial reduction, so the same classifier
        # Linear(512*3*3 -> 10): convs 9,219,904 + BN 2*2,752 + classifier 46,090 = 9,271,498.
        ("vggsnn_woap", {"num_classes": 10}, 9_271_498),
        # torchvision resnet34: 21,797,672; LIF neurons and the SEW ADD connection add nothing.
        ("spiking_resnet34", {"num_classes": 1000}, 21_797_672),
        ("sew_resnet34", {"num_classes": 1000}, 21_797_672),
    ],
)
def test_parameter_count(name, options, expected):
    assert num_parameters(name, **options) == expected


def test_tiny_options_cover_all_paper_models():
    assert set(TINY) <= set(models.names())


@pytest.mark.parametrize("name", sorted(TINY))
def test_model_backward(name):
    options, shape = TINY[name]
    torch.manual_seed(0)  # module init uses the global RNG
    model = models.build(name, num_classes=7, T=2, **options)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = model(x)
    assert out.shape == (2, 2, 7)
    out.square().mean().backward()
    no_grad = [key for key, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(TINY))
def test_factory_takes_common_options(name):
    expected = {"num_classes", "T", "tau", "v_threshold", "surrogate", "alpha", "in_channels"}
    assert expected | {"width"} <= set(models.model_options(name))
    model = models.build(name, tau=0.25, v_threshold=0.5, surrogate="sigmoid", alpha=2.0, width=0.1)
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert lifs and all(
        (m.tau, m.v_threshold, m.surrogate, m.alpha) == (0.25, 0.5, "sigmoid", 2.0) for m in lifs
    )


def test_resnet19_structure():
    model = models.build("resnet19", width=1 / 16)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [3, 3, 2]
    # The first block of every stage downsamples (64->128 channels, then stride 2), no other does.
    assert [b.downsample is not None for b in blocks] == [True, False, False] * 2 + [True, False]
    assert not any(b.is_sew for b in blocks)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 17 + 3 and all(c.bias is None for c in convs)  # 17 + 3 downsample convs


def test_spiking_and_sew_blocks():
    torch.manual_seed(0)
    spiking = BasicBlock(4, 8, 2, LIF, is_sew=False)
    sew = BasicBlock(4, 8, 2, LIF, is_sew=True)
    sew.load_state_dict(spiking.state_dict())
    x = (torch.rand(3, 2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    residual, identity = spiking.conv2(spiking.lif1(spiking.conv1(x))), spiking.downsample(x)
    torch.testing.assert_close(spiking(x), LIF()(residual + identity), rtol=0, atol=0)
    torch.testing.assert_close(sew(x), LIF()(residual) + LIF()(identity), rtol=0, atol=0)
    assert set(sew(x).unique().tolist()) <= {0.0, 1.0, 2.0}


def test_vgg_layouts():
    pooled = models.build("vggsnn", width=1 / 16)
    strided = models.build("vggsnn_woap", width=1 / 16)
    assert len(pooled.features) == 12 and len(strided.features) == 8
    strides = [m.stride[0] for m in strided.modules() if isinstance(m, torch.nn.Conv2d)]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 2]
    x = torch.rand(1, 1, 2, 48, 48)
    assert pooled.features(x).shape[-2:] == strided.features(x).shape[-2:] == (3, 3)
    with pytest.raises(ValueError, match="multiple of 16"):
        models.build("vggsnn", image_size=40)


def test_width_must_be_positive():
    with pytest.raises(ValueError, match="width must be > 0"):
        models.build("resnet19", width=0)

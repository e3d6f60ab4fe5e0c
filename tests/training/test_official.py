"""Official TET state dicts -> our models.

The official module *structure* (attribute names, containers, shared modules) is re-created below
from ``models/layers.py``, ``resnet_models.py`` and ``VGG_models.py`` of the official repo, with
channel counts as arguments so the forward comparison stays tiny. Its state dict then has exactly
the official key names, including ResNet-19's aliases, and its batch-major forward (with its own
LIF loop) is an independent reference for our time-major models.
"""

import pytest
import torch
from torch import nn

from training import models
from training.official import convert_official_state_dict


def lif_batch_major(x):
    """The official LIFSpike forward on ``[B, T, ...]`` (tau 0.5, threshold 1, hard reset)."""
    u, spikes = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        u = 0.5 * u + x[:, t]
        spikes.append((u > 1.0).to(x.dtype))
        u = u * (1 - spikes[-1])
    return torch.stack(spikes, dim=1)


class SeqToANNContainer(nn.Module):
    """Merges ``[B, T]``; a single layer is stored as ``.module``, several as ``.module.<i>``."""

    def __init__(self, *layers):
        super().__init__()
        self.module = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, x):
        y = self.module(x.flatten(0, 1))
        return y.view(*x.shape[:2], *y.shape[1:])


class TdBatchNorm(nn.Module):
    """One BatchNorm2d registered twice: as ``bn`` and as ``seqbn.module``."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.seqbn = SeqToANNContainer(self.bn)

    def forward(self, x):
        return self.seqbn(x)


class TdLayer(nn.Module):
    def __init__(self, layer, bn=None):
        super().__init__()
        self.layer = SeqToANNContainer(layer)
        self.bn = bn

    def forward(self, x):
        x = self.layer(x)
        return x if self.bn is None else self.bn(x)


class OfficialBlock(nn.Module):
    def __init__(self, c_in, c_out, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = TdBatchNorm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = TdBatchNorm(c_out)
        self.downsample = downsample
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        self.conv2_s = TdLayer(self.conv2, self.bn2)

    def forward(self, x):
        out = self.conv2_s(lif_batch_major(self.conv1_s(x)))
        identity = x if self.downsample is None else self.downsample(x)
        return lif_batch_major(out + identity)


class OfficialResNet19(nn.Module):
    def __init__(self, channels=(64, 128, 256, 512), hidden=256, num_classes=10, T=2):
        super().__init__()
        c0, c1, c2, c3 = channels
        self.T = T
        self.conv1 = nn.Conv2d(3, c0, 3, 1, 1, bias=False)
        self.bn1 = TdBatchNorm(c0)
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        self.layer1 = self.stage(c0, c1, 3, 1)
        self.layer2 = self.stage(c1, c2, 3, 2)
        self.layer3 = self.stage(c2, c3, 2, 2)
        self.avgpool = TdLayer(nn.AdaptiveAvgPool2d((1, 1)))
        self.fc1 = nn.Linear(c3, hidden)
        self.fc1_s = TdLayer(self.fc1)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.fc2_s = TdLayer(self.fc2)

    @staticmethod
    def stage(c_in, c_out, num_blocks, stride):
        down = None
        if stride != 1 or c_in != c_out:
            down = TdLayer(nn.Conv2d(c_in, c_out, 1, stride, bias=False), TdBatchNorm(c_out))
        blocks = [OfficialBlock(c_in, c_out, stride, down)]
        blocks += [OfficialBlock(c_out, c_out, 1, None) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = x.unsqueeze(1).repeat(1, self.T, 1, 1, 1)  # add_dimention: [B, T, C, H, W]
        x = lif_batch_major(self.conv1_s(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).flatten(2)
        return self.fc2_s(lif_batch_major(self.fc1_s(x)))


class Layer(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.fwd = SeqToANNContainer(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return lif_batch_major(self.fwd(x))


class OfficialVGG(nn.Module):
    """VGGSNN (``use_pooling``) or VGGSNNwoAP; one shared pooling module, as in the original."""

    def __init__(self, channels=(64, 128, 256, 256, 512, 512, 512, 512), use_pooling=True, side=3):
        super().__init__()
        pool, layers = SeqToANNContainer(nn.AvgPool2d(2)), []
        for index, (c_in, c_out) in enumerate(zip((2, *channels[:-1]), channels)):
            layers.append(Layer(c_in, c_out, 2 if index % 2 and not use_pooling else 1))
            layers += [pool] if index % 2 and use_pooling else []
        self.features = nn.Sequential(*layers)
        self.classifier = SeqToANNContainer(nn.Linear(channels[-1] * side * side, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(2))


def randomize_batchnorm(model, generator):
    """Non-default BN statistics and affine parameters, so every BN tensor must be mapped."""
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        c = bn.num_features
        bn.weight.data = 1 + 2 * torch.rand(c, generator=generator, dtype=bn.weight.dtype)
        bn.bias.data = 0.3 * torch.randn(c, generator=generator, dtype=bn.bias.dtype) + 0.3
        bn.running_mean = 0.1 * torch.randn(c, generator=generator, dtype=bn.bias.dtype)
        bn.running_var = 0.5 + torch.rand(c, generator=generator, dtype=bn.bias.dtype)
        bn.num_batches_tracked.fill_(int(torch.randint(1, 100, (), generator=generator)))


def tiny_pair(name, generator):
    """(official replica, our model, static or sequence input) at 1/16 width, float64, eval."""
    torch.manual_seed(0)  # module init uses the global RNG
    if name == "resnet19":
        official = OfficialResNet19((4, 8, 16, 32), hidden=16, T=2)
        official.fc1.weight.data *= 8  # pooled rates are small; let fc1's LIF fire
        ours = models.build(name, width=1 / 16, T=2)
        x = torch.randn(4, 3, 8, 8, generator=generator, dtype=torch.float64)
    else:
        channels = (4, 8, 16, 16, 32, 32, 32, 32)
        official = OfficialVGG(channels, use_pooling=name == "vggsnn", side=1)
        ours = models.build(name, width=1 / 16, image_size=16)
        x = torch.randn(4, 3, 2, 16, 16, generator=generator, dtype=torch.float64)  # [B, T, ...]
    official.double().eval()
    randomize_batchnorm(official, generator)
    return official, ours.double().eval(), x


@pytest.mark.parametrize("name", ["resnet19", "vggsnn", "vggsnn_woap"])
def test_converted_model_matches_official_forward(name):
    generator = torch.Generator().manual_seed(0)
    official, ours, x = tiny_pair(name, generator)
    ours.load_state_dict(convert_official_state_dict(official.state_dict(), name), strict=True)
    with torch.no_grad():
        expected = official(x)  # [B, T, classes]
        ours_x = x if x.ndim == 4 else x.transpose(0, 1)  # static, or time-major sequence
        actual = ours(ours_x).transpose(0, 1)
    assert expected.std(dim=0).max() > 0.01, "degenerate test: outputs do not depend on input"
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name, official_factory",
    [
        ("resnet19", OfficialResNet19),
        ("vggsnn", lambda: OfficialVGG(use_pooling=True)),
        ("vggsnn_woap", lambda: OfficialVGG(use_pooling=False)),
    ],
)
def test_full_size_keys_and_shapes(name, official_factory):
    with torch.device("meta"):  # no memory or init cost for the 9-13M parameters
        official = official_factory()
        ours = models.build(name)
    state = {
        f"module.{key}": torch.zeros(value.shape, dtype=value.dtype)  # DataParallel prefix
        for key, value in official.state_dict().items()
    }
    if name == "resnet19":  # each BN under 4 keys, each conv / fc under 2
        assert "layer2.0.conv1_s.bn.seqbn.module.running_var" in official.state_dict()
        assert len(state) > len(ours.state_dict()) * 2
    converted = convert_official_state_dict(state, name)
    ours.load_state_dict(converted, strict=True, assign=True)  # checks keys and shapes


def test_alias_subset_is_enough():
    """A deduplicated dict (one alias per tensor) converts to the same result."""
    generator = torch.Generator().manual_seed(1)
    official, _, _ = tiny_pair("resnet19", generator)
    state = official.state_dict()
    full = convert_official_state_dict(state, "resnet19")
    reduced = {
        key: value for key, value in state.items() if "_s." not in key and "seqbn" not in key
    }
    assert len(reduced) < len(state)
    partial = convert_official_state_dict(reduced, "resnet19")
    assert partial.keys() == full.keys()
    assert all(torch.equal(partial[key], full[key]) for key in full)


def test_errors_name_the_keys():
    generator = torch.Generator().manual_seed(2)
    official, _, _ = tiny_pair("vggsnn", generator)
    state = official.state_dict()
    del state["features.3.fwd.module.1.running_var"]
    state["features.5.fwd.module.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing 1: \['features.3.fwd.module.1.running_var'\]"):
        convert_official_state_dict(state, "vggsnn")
    with pytest.raises(ValueError, match="unexpected 1: .*features.5.fwd.module.0.weight"):
        convert_official_state_dict(state, "vggsnn")
    # the pooled layout loaded as the strided one: the name is wrong, and the error says so
    with pytest.raises(ValueError, match="VGGSNN vs VGGSNNwoAP"):
        convert_official_state_dict(official.state_dict(), "vggsnn_woap")
    with pytest.raises(ValueError, match="expected one of"):
        convert_official_state_dict(state, "sew_resnet34")


def test_conflicting_aliases_raise():
    generator = torch.Generator().manual_seed(3)
    official, _, _ = tiny_pair("resnet19", generator)
    state = official.state_dict()
    state["conv1_s.bn.seqbn.module.weight"] = state["bn1.bn.weight"] + 1
    with pytest.raises(ValueError, match="differ.*conv1_s.bn.seqbn.module.weight"):
        convert_official_state_dict(state, "resnet19")


def test_wrapper_prefixes_are_stripped_but_inner_module_kept():
    generator = torch.Generator().manual_seed(4)
    official, _, _ = tiny_pair("vggsnn", generator)
    state = official.state_dict()
    wrapped = {f"module._orig_mod.{key}": value for key, value in state.items()}
    converted = convert_official_state_dict(wrapped, "vggsnn")
    assert converted.keys() == convert_official_state_dict(state, "vggsnn").keys()


@pytest.mark.parametrize("name", ["resnet19", "vggsnn", "vggsnn_woap"])
def test_every_converted_tensor_reaches_the_output(name):
    """Guards the forward comparison: a wrongly mapped tensor would change the outputs."""
    generator = torch.Generator().manual_seed(0)
    official, ours, x = tiny_pair(name, generator)
    converted = convert_official_state_dict(official.state_dict(), name)
    x = x if x.ndim == 4 else x.transpose(0, 1)
    ours.load_state_dict(converted)
    with torch.no_grad():
        reference = ours(x)
        inert = []
        for key, value in converted.items():
            if key.endswith("num_batches_tracked"):  # unused with momentum=0.1
                continue
            noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
            ours.load_state_dict({**converted, key: value + 0.5 * noise})
            inert += [key] if torch.equal(ours(x), reference) else []
    assert not inert, f"tensors with no effect on the test outputs: {inert}"

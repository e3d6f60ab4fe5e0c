"""Official TET state dicts -> our models.

The official module *structure* (attribute names, containers, shared modules) is re-created in
``benchmarks/official_style.py`` from ``models/layers.py``, ``resnet_models.py`` and
``VGG_models.py`` of the official repo, with widths as arguments so the forward comparison stays
tiny. Its state dict has exactly the official key names, including ResNet-19's aliases, and its
batch-major forward (with its own LIF loop) is an independent reference for our time-major models.
"""

import pytest
import torch
from torch import nn

from benchmarks.official_style import OfficialResNet19, OfficialVGG
from training import models
from training.runs.official import convert_official_state_dict


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
        official = OfficialResNet19(T=2, width=1 / 16)  # channels 4, 8, 16, 32, hidden 16
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

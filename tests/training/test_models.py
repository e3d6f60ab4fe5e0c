import pytest
import torch

from training import models
from training.snn.losses import get_loss


def _small_model(name):
    return models.build(name, num_classes=7, T=2)


@pytest.mark.parametrize("method", ["sdt", "tet"])
@pytest.mark.parametrize("name", ["digits_snn", "spiking_mlp"])
def test_core_models_output_shape_and_gradients(name, method):
    torch.manual_seed(0)
    model = _small_model(name)
    x = torch.rand(3, 1, 8, 8) * 4
    outputs = model(x)
    assert outputs.shape == (2, 3, 7)
    get_loss(method)(outputs, torch.tensor([0, 3, 6])).backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None, key
        assert torch.isfinite(parameter.grad).all(), key


def test_time_steps_can_be_overridden_per_call():
    model = _small_model("digits_snn").eval()
    x = torch.rand(2, 1, 8, 8)
    assert model(x, T=5).shape == (5, 2, 7)
    assert model.T == 2


def test_sequence_input_is_used_as_time_major():
    model = _small_model("digits_snn").eval()
    assert model(torch.rand(3, 2, 1, 8, 8)).shape == (3, 2, 7)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(2, 64))


def test_default_digits_model_size():
    model = models.build("digits_snn")
    assert sum(p.numel() for p in model.parameters()) == 6138


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet1000'; known models: .*digits_snn"):
        models.build("resnet1000")
    with pytest.raises(ValueError, match="does not take option"):
        models.build("digits_snn", depth=3)
    assert "digits_snn" in models.names()
    # None means "use the default"
    assert models.build("digits_snn", T=None).T == 4


def test_neuron_options_are_declared_once():
    from training.models.registry import NEURON_OPTIONS
    from training.runs.config import TrainConfig

    for name in models.names():
        assert models.model_options(name)[-len(NEURON_OPTIONS) :] == list(NEURON_OPTIONS)
    config = TrainConfig()
    flags = {"tau": "tau", "v_threshold": "v_threshold", "surrogate": "surrogate"}
    flags["alpha"] = "surrogate_alpha"
    assert {key: getattr(config, flags[key]) for key in NEURON_OPTIONS} == NEURON_OPTIONS
    with pytest.raises(ValueError, match="does not take"):
        models.build("digits_snn", neuron={"tau": 0.1})


def test_registry_imports_no_model_file():
    import ast
    import inspect

    from training.models import registry

    tree = ast.parse(inspect.getsource(registry))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {name for name in imported if name and name.startswith("training")}

import hashlib
import os
import pickle
import re
import warnings

import pytest
import torch

from toolkit.errors import CheckpointError
from training import models
from training.runs import checkpoint
from training.runs.config import TrainConfig

CONFIG = {
    "model": "digits_snn",
    "dataset": "digits",
    "T": 2,
    "method": "tet",
    "tet_lambda": 0.05,
    "tet_phi": 1.0,
    "seed": 0,
    "input_shape": [1, 8, 8],
    "num_classes": 10,
}


def _saved(tmp_path, **state):
    torch.manual_seed(0)
    model = models.build("digits_snn", T=2)
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, model, "digits_snn", {"T": 2}, CONFIG, epoch=3, **state)
    return model, path


def test_round_trip_gives_identical_outputs(tmp_path):
    model, path = _saved(tmp_path, history=[{"epoch": 1, "test_acc": 0.5}])
    loaded, config = checkpoint.load(path)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    assert torch.equal(model.eval()(x), loaded(x))
    assert not loaded.training and config == TrainConfig.from_stored(CONFIG)
    assert config.T == 2 and config.tet_lambda == 0.05 and config.epochs == 15  # a default
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1 and raw["epoch"] == 3 and raw["provenance"]["torch"]


def test_prefixed_state_dicts_are_cleaned(tmp_path):
    model = models.build("digits_snn", T=2)
    for prefix in ("module._orig_mod.", "_orig_mod.module.", "module.module."):
        prefixed = {prefix + k: v for k, v in model.state_dict().items()}
        assert checkpoint.clean_state_dict(prefixed).keys() == model.state_dict().keys()


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": _Exploit(), "config": {}, "epoch": 0}, path)
    with pytest.raises(CheckpointError, match="refused to load, it holds non-tensor objects"):
        checkpoint.load(path)
    assert not (tmp_path / "pwned_marker").exists()
    with open(tmp_path / "raw.pkl", "wb") as handle:
        pickle.dump(_Exploit(), handle)
    with pytest.raises(CheckpointError):
        checkpoint.load(tmp_path / "raw.pkl")
    assert not (tmp_path / "pwned_marker").exists()


def test_truncated_checkpoint(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)


def test_foreign_and_missing_checkpoints(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(models.build("digits_snn").state_dict(), path)
    with pytest.raises(CheckpointError, match="not a tet-landscape checkpoint.*import_official"):
        checkpoint.load(path)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        checkpoint.load(tmp_path / "nope.pt")


def test_state_dict_that_does_not_fit_names_the_keys(tmp_path):
    _, path = _saved(tmp_path)
    raw = torch.load(path, weights_only=True)
    state = raw["model"]["state_dict"]
    state.pop("classifier.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["features.0.0.weight"] = torch.zeros(3, 1, 3, 3)
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert "missing 1: classifier.1.bias" in message and "unexpected 1: extra.weight" in message
    assert "wrong shape 1: features.0.0.weight (3, 1, 3, 3) vs model (16, 1, 3, 3)" in message


def test_read_hashes_the_bytes_it_parsed(tmp_path):
    _, path = _saved(tmp_path)
    read = checkpoint.read(path)
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read.record == {"path": str(path), "sha256": read.sha256}
    assert read.input_shape == (1, 8, 8) and read.num_classes == 10 and read.epoch == 3


@pytest.mark.parametrize(
    "change,message",
    [
        ({"T": 0}, "its config is invalid: T must be in [1, 1000], got 0"),
        ({"model": "spiking_mlp"}, "disagrees with its model: model 'spiking_mlp' vs the stored"),
        ({"T": 3}, "disagrees with its model: T 3 vs the stored model's 2"),
        ({"lrr": 1}, "its config is invalid: unknown config field(s) ['lrr']"),
    ],
)
def test_a_config_that_disagrees_with_its_model_is_refused(tmp_path, change, message):
    model = models.build("digits_snn", T=2)
    path = tmp_path / "ckpt.pt"
    checkpoint.save(path, model, "digits_snn", {"T": 2}, {**CONFIG, **change}, epoch=0)
    with pytest.raises(CheckpointError, match=re.escape(message)):
        checkpoint.read(path)


def test_a_raw_pickle_is_refused_without_torch_warnings(tmp_path):
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"a": 1}, handle, protocol=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError):
            checkpoint.read(path)

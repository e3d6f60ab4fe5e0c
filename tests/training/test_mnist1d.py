"""MNIST-1D: offline generation, cache, encodings, the CLI on a tiny split, paired SDT/TET runs."""

import json
import os
import random
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from toolkit.errors import ConfigError
from training import models
from training.data import mnist1d
from training.data.datasets import Dataset, TensorLoader, dataset_for
from training.runs.config import TrainConfig

RUN = [sys.executable, str(REPO / "training" / "run.py")]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
TINY = [
    "--dataset",
    "mnist1d",
    "--model",
    "mnist1d_snn",
    "--mnist1d-samples",
    "100",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "16",
    "--quiet",
    "--no-eval-train",
    "--no-gradient-stats",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A data root whose cache holds the 100-sample MNIST-1D (generated once per module)."""
    path = tmp_path_factory.mktemp("data")
    mnist1d.load_arrays(path, 100)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection or call of the package's download path fails the test."""
    import mnist1d.data

    def refuse(*args, **kwargs):
        raise AssertionError("network access or mnist1d.data.get_dataset was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)


def test_generation_matches_the_package_offline_and_keeps_global_rng(tmp_path, no_network):
    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    arrays = mnist1d.load_arrays(tmp_path, 50)
    assert (random.random(), np.random.rand()) == before  # make_dataset's seeding is undone
    assert arrays["x"].shape == (40, 40) and arrays["x_test"].shape == (10, 40)
    assert arrays["x"].dtype == np.float32 and arrays["y"].dtype == np.int64
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 50
    reference = make_dataset(args)
    np.testing.assert_allclose(arrays["x"], reference["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(arrays["y_test"], reference["y_test"])


def test_generation_args_are_the_package_defaults():
    from mnist1d.data import get_dataset_args

    package = get_dataset_args(as_dict=True)
    package.pop("url")
    assert mnist1d.GENERATION_ARGS == package
    assert mnist1d.generation_args(5000)["num_samples"] == 5000 and mnist1d.LENGTH == 40
    with pytest.raises(ConfigError):
        mnist1d.generation_args(9)


def test_cache_hit_does_not_regenerate_and_key_follows_arguments(root, monkeypatch):
    path = mnist1d.cache_path(root, mnist1d.generation_args(100))
    assert path.is_file() and path.parent == root / "mnist1d"
    stored = json.loads(str(np.load(path)["meta"]))
    assert stored["args"] == mnist1d.generation_args(100)

    def fail(args):
        raise AssertionError("generator called on a cache hit")

    monkeypatch.setattr(mnist1d, "generate", fail)
    assert mnist1d.load_arrays(root, 100)["x"].shape == (80, 40)
    keys = {mnist1d.cache_key(mnist1d.generation_args(n)) for n in (100, 200)}
    keys.add(mnist1d.cache_key({**mnist1d.generation_args(100), "seed": 43}))
    assert len(keys) == 3
    code = (
        "import sys; from training.data.mnist1d import load_mnist1d; "
        f"load_mnist1d({str(root)!r}, 100); print(sorted(m for m in sys.modules if 'mnist1d' in m))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['training.data.mnist1d']"]  # the package was never imported


def _dataset(*args, **kwargs) -> Dataset:
    return Dataset("mnist1d", *mnist1d.load_mnist1d(*args, **kwargs), 10, (0.0,))


def test_encodings_shapes_and_normalization(root):
    static = _dataset(root, 100, "static")
    sequence = _dataset(root, 100, "sequence", T=4)
    assert static.x_train.shape == (80, 1, 1, 40) and static.x_test.shape == (20, 1, 1, 40)
    assert sequence.x_train.shape == (80, 4, 1, 1, 10) and static.num_classes == 10
    for t in range(4):
        torch.testing.assert_close(
            sequence.x_train[:, t, 0, 0], static.x_train[:, 0, 0, 10 * t :][:, :10]
        )
    assert abs(static.x_train.mean()) < 1e-5 and abs(static.x_train.std() - 1) < 1e-5
    held = _dataset(root, 100, "static", validation=0.2)
    assert len(held.y_train) == 64 and len(held.y_test) == 16
    raw = torch.from_numpy(mnist1d.load_arrays(root, 100)["x"])
    assert torch.equal(held.y_test, torch.from_numpy(mnist1d.load_arrays(root, 100)["y"][64:]))
    corr = torch.corrcoef(torch.stack([held.x_test.flatten(), raw[64:].flatten()]))[0, 1]
    assert corr > 0.999999  # the held-out part is the tail of the training split, rescaled
    with pytest.raises(ConfigError, match="T dividing 40"):
        mnist1d.load_mnist1d(root, 100, "sequence", T=3)


@pytest.mark.parametrize("encoding", ["static", "sequence"])
def test_model_handles_both_encodings(root, encoding):
    config = TrainConfig(
        dataset="mnist1d", data_root=str(root), mnist1d_samples=100, encoding=encoding, T=8
    )
    data = dataset_for(config)
    x, _ = next(TensorLoader(data.x_train, data.y_train, 5).batches())
    assert x.shape == ((5, 1, 1, 40) if encoding == "static" else (8, 5, 1, 1, 5))
    model = models.build("mnist1d_snn", image_size=data.input_shape[-1], T=8)
    assert model(x).shape == (8, 5, 10)


def test_config_rejects_bad_mnist1d_settings():
    with pytest.raises(ConfigError, match="T dividing"):
        TrainConfig(dataset="mnist1d", encoding="sequence", T=6)
    with pytest.raises(ConfigError, match="needs dataset mnist1d"):
        TrainConfig(encoding="sequence")
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(dataset="mnist1d", augment=True)
    TrainConfig(dataset="mnist1d", encoding="sequence", T=5)


def test_cli_sequence_with_T_not_dividing_40_is_one_line_error(root, tmp_path):
    args = [*TINY, "--data-root", str(root), "--out", str(tmp_path), "--encoding", "sequence"]
    out = subprocess.run([*RUN, *args, "--T", "3"], env=ENV, capture_output=True, text=True)
    assert out.returncode == 2  # a usage error
    assert out.stderr.strip().splitlines() == [
        "run.py: error: encoding sequence needs T dividing the 40 MNIST-1D samples, got T=3"
    ]


def _state(path):
    return torch.load(path, weights_only=True)["model"]["state_dict"]


@pytest.mark.parametrize("encoding", ["static", "sequence"])
def test_cli_trains_tiny_split_and_sdt_tet_share_initial_weights(tmp_path, encoding):
    # A fresh data root: run.py generates the data (training/ is sys.path[0] there, so a module
    # training/mnist1d.py would shadow the package).
    data = tmp_path / "data"
    committed = REPO / "configs" / "mnist1d.json"  # flags given below override it
    args = [
        "--config",
        str(committed),
        *TINY,
        "--data-root",
        str(data),
        "--out",
        str(tmp_path),
        "--encoding",
        encoding,
    ]
    out = subprocess.run(
        [*RUN, *args, "--save-every", "1"], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == ["SDT", "TET"]
    runs = {m: tmp_path / f"mnist1d-mnist1d_snn-T4-{m}-seed0" for m in ("sdt", "tet")}
    config = json.loads((runs["tet"] / "config.json").read_text())
    shape = [1, 1, 40] if encoding == "static" else [4, 1, 1, 10]
    assert config["input_shape"] == shape and config["encoding"] == encoding
    values = json.loads(committed.read_text())
    assert all(config[k] == values[k] for k in ("tet_lambda", "tet_phi", "lr", "T", "width"))
    init = {m: _state(run / "epoch_000.pt") for m, run in runs.items()}
    assert init["sdt"].keys() == init["tet"].keys()
    assert all(torch.equal(init["sdt"][k], init["tet"][k]) for k in init["sdt"])
    assert len(list((data / "mnist1d").glob("mnist1d-*.npz"))) == 1
    trained = {m: _state(run / "last.pt") for m, run in runs.items()}
    assert not all(torch.equal(trained["sdt"][k], trained["tet"][k]) for k in trained["sdt"])


def test_sdt_and_tet_draw_the_same_batches(root, tmp_path, monkeypatch):
    from training.runs import trainer

    drawn, original = [], TensorLoader.batches

    def recording(self, epoch=0, generator=None):
        for x, y in original(self, epoch, generator):
            if self.shuffle:
                drawn.append((epoch, x.clone(), y.clone()))
            yield x, y

    monkeypatch.setattr(TensorLoader, "batches", recording)
    config = TrainConfig(
        dataset="mnist1d",
        model="mnist1d_snn",
        data_root=str(root),
        mnist1d_samples=100,
        epochs=2,
        steps_per_epoch=3,
        batch_size=16,
        eval_train=False,
        gradient_stats=False,
        device="cpu",
    )
    batches = {}
    for method in ("sdt", "tet"):
        drawn.clear()
        trainer.train(config.replace(method=method), tmp_path / method, progress=False)
        batches[method] = list(drawn)
    assert {b[0] for b in batches["sdt"]} == {0, 1}
    for (_, x_sdt, y_sdt), (_, x_tet, y_tet) in zip(batches["sdt"], batches["tet"], strict=True):
        assert torch.equal(x_sdt, x_tet) and torch.equal(y_sdt, y_tet)
    first = [b[2] for b in batches["sdt"] if b[0] == 0][0]
    second = [b[2] for b in batches["sdt"] if b[0] == 1][0]
    assert not torch.equal(first, second)  # a new order every epoch


def test_corrupt_cache_is_a_data_error(tmp_path):
    from toolkit.errors import DataError

    path = mnist1d.cache_path(tmp_path, mnist1d.generation_args(100))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    with pytest.raises(DataError, match="delete it"):
        mnist1d.load_arrays(tmp_path, 100)


def test_the_dataset_brings_its_model(root, tmp_path):
    assert TrainConfig(dataset="mnist1d").model == "mnist1d_snn"
    assert TrainConfig(dataset="mnist1d", model="spiking_mlp").model == "spiking_mlp"
    assert TrainConfig().model == "digits_snn"
    args = [a for a in TINY if a not in ("--model", "mnist1d_snn")]
    out = subprocess.run(
        [*RUN, *args, "--data-root", str(root), "--out", str(tmp_path), "--method", "tet"],
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "mnist1d-mnist1d_snn-T4-tet-seed0" / "last.pt").is_file()


def test_each_draw_has_its_own_training_data_and_all_share_one_large_test_set(root):
    first = mnist1d.load_mnist1d(root, 100, seed=1000, test_samples=60)
    second = mnist1d.load_mnist1d(root, 100, seed=1001, test_samples=60)
    assert not torch.equal(first[0], second[0])  # another draw of the training data
    assert len(first[3]) == 60 and torch.equal(first[3], second[3])  # the same test labels
    own = mnist1d.load_mnist1d(root, 100, seed=1000)
    assert torch.equal(own[0], first[0]) and len(own[3]) == 20  # the draw's own 1/5 split
    config = TrainConfig(dataset="mnist1d", data_root=str(root), mnist1d_samples=100)
    assert torch.equal(dataset_for(config).x_train, mnist1d.load_mnist1d(root, 100)[0])
    with pytest.raises(ConfigError, match="exclude each other"):
        mnist1d.load_mnist1d(root, 100, validation=0.2, test_samples=60)

import os
import pickle

import numpy as np
import pytest
import torch

from toolkit.errors import DataError
from training.data.datasets import (
    TensorLoader,
    load_cifar,
    load_dataset,
    load_digits,
    load_npz,
    random_crop_flip,
)


def test_digits_split_is_stratified_fixed_and_scaled():
    a, b = load_digits(), load_digits()
    assert torch.equal(a.y_test, b.y_test) and torch.equal(a.x_train, b.x_train)
    assert len(a.y_train) + len(a.y_test) == 1797
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    per_class = torch.bincount(torch.cat([a.y_train, a.y_test]), minlength=10)
    in_test = torch.bincount(a.y_test, minlength=10)
    assert ((in_test - 0.25 * per_class).abs() <= 1).all()  # stratified
    assert load_digits(upsample=2).input_shape == (1, 16, 16)


def _write_cifar_batch(path, data, labels, key=b"labels"):
    batch = {
        b"batch_label": b"testing batch",
        key: labels,
        b"data": data,
        b"filenames": [b"f%d.png" % i for i in range(len(labels))],
    }
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)


def _fake_cifar10(root, n=4):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        _write_cifar_batch(base / name, data, [int(v) for v in rng.integers(0, 10, n)])
    return base


def test_cifar_reader_reads_official_format_and_normalizes(tmp_path):
    base = _fake_cifar10(tmp_path)
    ds = load_cifar(tmp_path, 10)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    with open(base / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    first = torch.tensor(raw[b"data"][0].reshape(3, 32, 32), dtype=torch.float32) / 255
    mean, std = torch.tensor((0.4914, 0.4822, 0.4465)), torch.tensor((0.2023, 0.1994, 0.2010))
    torch.testing.assert_close(ds.x_test[0], (first - mean.view(3, 1, 1)) / std.view(3, 1, 1))
    assert ds.y_test.tolist() == [int(v) for v in raw[b"labels"]]
    torch.testing.assert_close(torch.tensor(ds.pad_value), -mean / std)


def test_cifar100_uses_fine_labels(tmp_path):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for name in ("train", "test"):
        _write_cifar_batch(
            base / name, np.zeros((3, 3072), np.uint8), [5, 99, 0], key=b"fine_labels"
        )
    ds = load_dataset("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.y_train.tolist() == [5, 99, 0]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_crafted_cifar_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = _fake_cifar10(tmp_path)
    with open(base / "test_batch", "wb") as handle:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(DataError, match="refusing to load posix.system"):
        load_cifar(tmp_path, 10)
    assert not (tmp_path / "pwned_marker").exists()


def test_missing_cifar_files_are_named(tmp_path):
    with pytest.raises(
        DataError, match=r"CIFAR-10 files missing under .*cifar-10-batches-py: data_batch_1"
    ):
        load_cifar(tmp_path, 10)


def test_npz_dataset_round_trip_and_errors(tmp_path):
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 2, 5, 5), np.float32),
        y_train=np.array([0, 1, 2, 1]),
        x_test=np.ones((2, 2, 5, 5), np.float32),
        y_test=np.array([2, 0]),
    )
    ds = load_npz(path)
    assert ds.num_classes == 3 and ds.input_shape == (2, 5, 5) and ds.x_test.sum() == 100
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((1, 1, 2, 2)))
    with pytest.raises(DataError, match=r"lacks array\(s\) \['x_test', 'y_test', 'y_train'\]"):
        load_npz(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="npz dataset not found"):
        load_npz(tmp_path / "none.npz")
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_random_crop_flip_semantics():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = random_crop_flip(x, 0, (0.0, 0.0, 0.0), g)  # no padding: identity or flip
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = random_crop_flip(x, 2, (-1.0, -2.0, -3.0), torch.Generator().manual_seed(1))
    for i in range(2):
        for c in range(3):  # every value is a pixel of the image or that channel's pad value
            allowed = set(x[i, c].flatten().tolist()) | {-(c + 1.0)}
            assert set(out[i, c].flatten().tolist()) <= allowed
    again = random_crop_flip(x, 2, (-1.0, -2.0, -3.0), torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_random_crop_covers_all_offsets():
    x = torch.ones(2000, 1, 4, 4)
    out = random_crop_flip(x, 1, (0.0,), torch.Generator().manual_seed(0))
    zero_rows_top = (out[:, 0, 0, :] == 0).all(1).float().mean()
    assert 0.25 < zero_rows_top < 0.42  # offset 0 of {0, 1, 2}: 1/3


def test_tensor_loader_batches_epochs_and_sequences():
    x, y = torch.arange(10).float().view(10, 1), torch.arange(10)
    loader = TensorLoader(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    epoch0 = torch.cat([b[1] for b in loader.batches(0)])
    assert sorted(epoch0.tolist()) == list(range(10))
    assert torch.equal(epoch0, torch.cat([b[1] for b in loader.batches(0)]))
    assert not torch.equal(epoch0, torch.cat([b[1] for b in loader.batches(1)]))
    seq = TensorLoader(torch.zeros(5, 3, 2, 4, 4), torch.zeros(5, dtype=torch.long), 2)
    assert next(iter(seq.batches()))[0].shape == (3, 2, 2, 4, 4)  # time-major


def test_digits_split_seed_draws_another_stratified_split():
    from training.data.datasets import dataset_for
    from training.runs.config import TrainConfig

    zero, one = load_digits(split_seed=0), load_digits(split_seed=1)
    assert len(zero.y_test) == len(one.y_test) and not torch.equal(zero.y_test, one.y_test)
    assert torch.equal(zero.y_test.bincount(), one.y_test.bincount())  # stratified alike
    assert torch.equal(dataset_for(TrainConfig(digits_split_seed=1)).x_test, one.x_test)

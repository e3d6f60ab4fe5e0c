"""Datasets as tensors, batch augmentation on the training device, and a tensor loader.

Every dataset is held as normalized tensors ``x [N, C, H, W]`` (static images) or
``x [N, T, C, H, W]`` (event frames) with integer labels ``y [N]``. Augmentation runs on whole
batches on the device; padding uses the normalized value of a black pixel, so "pad, then
normalize" (torchvision's order) and "normalize, then pad with that value" agree.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from toolkit.errors import DataError

__all__ = [
    "Dataset",
    "DATASETS",
    "DEFAULT_MODELS",
    "load_dataset",
    "dataset_for",
    "DATA_FIELDS",
    "load_digits",
    "load_cifar",
    "load_npz",
    "read_cifar_batch",
    "random_crop_flip",
    "TensorLoader",
]

CIFAR_STATS = {  # official TET data_loaders.py
    10: ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    100: ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
CIFAR_FILES = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    100: ("cifar-100-python", ["train"], ["test"]),
}


@dataclass
class Dataset:
    """A dataset held as normalized tensors.

    Attributes:
        name: Dataset name.
        x_train: ``[N, C, H, W]`` or ``[N, T, C, H, W]`` normalized inputs.
        y_train: ``[N]`` int64 labels.
        x_test: Test inputs, same layout.
        y_test: Test labels.
        num_classes: Number of classes.
        pad_value: Per-channel normalized value of a black pixel, used to pad random crops.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    pad_value: tuple[float, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.x_train.shape[1:])


def _normalize(x: Tensor, mean, std) -> tuple[Tensor, tuple[float, ...]]:
    mean_t = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    pad = tuple(float(-m / s) for m, s in zip(mean, std))
    return (x - mean_t) / std_t, pad


def load_digits(split_seed: int = 0, test_fraction: float = 0.25, upsample: int = 1) -> Dataset:
    """scikit-learn's bundled handwritten digits (1797 real 8x8 images, no download).

    Pixels are scaled from 0..16 to [0, 1]; the split is stratified with a fixed seed, so every
    training seed sees the same split. ``upsample`` repeats pixels (nearest) to ``8 * upsample``.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    if upsample > 1:
        x = x.repeat_interleave(upsample, 2).repeat_interleave(upsample, 3)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    index = np.arange(len(y))
    train, test = train_test_split(
        index, test_size=test_fraction, stratify=bunch.target, random_state=split_seed
    )
    train, test = torch.as_tensor(np.sort(train)), torch.as_tensor(np.sort(test))
    return Dataset("digits", x[train], y[train], x[test], y[test], 10, (0.0,))


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR python batches contain: numpy arrays and builtins."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one official CIFAR python batch file safely.

    Returns:
        ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    Raises:
        DataError: If the file is not a CIFAR batch or holds anything but the allowed types.
    """
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = batch[b"labels"] if b"labels" in batch else batch[b"fine_labels"]
        labels = np.asarray(labels, dtype=np.int64)
    except (
        pickle.UnpicklingError,
        KeyError,
        TypeError,
        ValueError,
        EOFError,
        LookupError,  # an unknown codec in a _codecs.encode call
        UnicodeError,
        AttributeError,
    ) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise DataError(f"{path} is not a valid CIFAR python batch: {reason}") from None
    if labels.ndim != 1 or len(labels) != len(data):
        raise DataError(
            f"{path}: {labels.size} labels for {len(data)} images; expected one label per image"
        )
    return data, labels


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise a DataError unless every label is in ``0 .. num_classes - 1``."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{path}: labels range over {int(labels.min())}..{int(labels.max())}; expected "
            f"0..{num_classes - 1}"
        )


def load_cifar(root: str | Path, num_classes: int = 10) -> Dataset:
    """CIFAR-10/100 from the official python pickle batches under ``root``.

    Raises:
        DataError: If files are missing (the message names them and the expected layout).
    """
    folder, train_files, test_files = CIFAR_FILES[num_classes]
    base = Path(root) / folder
    missing = [name for name in train_files + test_files if not (base / name).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-{num_classes} files missing under {base}: {', '.join(missing)} "
            f"(expected the official python version, extracted so that {base}/{missing[0]} exists)"
        )

    def read(names: list[str]) -> tuple[Tensor, Tensor]:
        parts = [read_cifar_batch(base / name) for name in names]
        for name, (_, labels) in zip(names, parts):
            _check_labels(labels, num_classes, base / name)
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float() / 255.0
        return x, torch.from_numpy(np.concatenate([p[1] for p in parts]))

    (x_train, y_train), (x_test, y_test) = read(train_files), read(test_files)
    mean, std = CIFAR_STATS[num_classes]
    x_train, pad = _normalize(x_train, mean, std)
    x_test, _ = _normalize(x_test, mean, std)
    return Dataset(f"cifar{num_classes}", x_train, y_train, x_test, y_test, num_classes, pad)


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_array(path: Path, arrays, key: str) -> np.ndarray:
    """One numeric array of the npz file, or a DataError naming what is wrong with it."""
    try:
        array = arrays[key]
    except ValueError as error:  # object arrays need pickle, which is refused
        raise DataError(f"{path}: {key} cannot be read without pickle ({error})") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} has dtype {array.dtype}; expected numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{path}: {key} holds NaN or infinite values")
    if key.startswith("y_") and array.dtype.kind == "f" and (array != np.round(array)).any():
        raise DataError(f"{path}: {key} holds non-integer labels; expected class indices")
    return array


def load_npz(path: str | Path) -> Dataset:
    """A user dataset in one ``.npz`` with ``x_train, y_train, x_test, y_test``, used as is.

    Inputs must be ``[N, C, H, W]`` (static) or ``[N, T, C, H, W]`` (sequences), already scaled,
    finite numbers; labels integer class indices ``0 .. C - 1``.

    Raises:
        DataError: On a missing or unreadable file, a missing, non-numeric or non-finite array,
            non-integer or negative labels, or shapes that do not fit together.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"npz dataset not found: {path} (expected arrays x_train, y_train, x_test, y_test)"
        )
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = set(NPZ_ARRAYS) - set(arrays.files)
            if missing:
                raise DataError(f"{path} lacks array(s) {sorted(missing)}; it has {arrays.files}")
            x_train, y_train, x_test, y_test = (_npz_array(path, arrays, k) for k in NPZ_ARRAYS)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise DataError(f"{path} is not a readable .npz file: {reason}") from None
    x_train, x_test = torch.from_numpy(x_train).float(), torch.from_numpy(x_test).float()
    y_train, y_test = torch.from_numpy(y_train).long(), torch.from_numpy(y_test).long()
    if x_train.ndim not in (4, 5) or x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train/x_test must be [N, C, H, W] or [N, T, C, H, W] alike")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or len(y) != len(x) or not len(y):
            raise DataError(
                f"{path}: y_{split} has shape {list(y.shape)} for x_{split} of shape "
                f"{list(x.shape)}; expected one integer label per sample, [{len(x)}]"
            )
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    _check_labels(torch.cat([y_train, y_test]).numpy(), num_classes, path)
    return Dataset(path.stem, x_train, y_train, x_test, y_test, num_classes, (0.0,))


DATASETS = ("digits", "cifar10", "cifar100", "cifar10_dvs", "npz", "imagenet", "mnist1d")
DEFAULT_MODELS = {
    "digits": "digits_snn",
    "npz": "digits_snn",
    "mnist1d": "mnist1d_snn",
    "cifar10": "resnet19",
    "cifar100": "resnet19",
    "cifar10_dvs": "vggsnn",
    "imagenet": "sew_resnet34",
}
"""The model a dataset brings (``TrainConfig.model`` left unset)."""


def load_dataset(
    name: str,
    data_root: str | Path = "data",
    upsample: int = 1,
    frames: int = 10,
    mnist1d: dict | None = None,
    split_seed: int = 0,
) -> Dataset:
    """Load a dataset by name (``DATASETS``); ``npz`` reads ``data_root`` as the file path.

    Args:
        name: One of ``DATASETS``.
        data_root: Dataset folder (``npz``: the file).
        upsample: Digits only: nearest-neighbour upsampling factor.
        frames: CIFAR10-DVS: number of event frames per sample; MNIST-1D ``sequence``: T.
        mnist1d: MNIST-1D only: ``samples``, ``encoding``, ``validation``, ``seed``,
            ``test_samples`` of ``training.data.mnist1d.load_mnist1d``.
        split_seed: Digits only: seed of the stratified train/test split.

    Raises:
        DataError: On an unknown name or missing files.
    """
    if name == "digits":
        return load_digits(split_seed=split_seed, upsample=upsample)
    if name in ("cifar10", "cifar100"):
        return load_cifar(data_root, int(name[5:]))
    if name == "npz":
        return load_npz(data_root)
    if name == "cifar10_dvs":
        return _load_dvs(data_root, frames)
    if name == "mnist1d":
        from training.data.mnist1d import load_mnist1d

        x_train, y_train, x_test, y_test = load_mnist1d(data_root, T=frames, **(mnist1d or {}))
        return Dataset("mnist1d", x_train, y_train, x_test, y_test, 10, (0.0,))
    if name == "imagenet":
        raise DataError(
            "imagenet is streamed from disk, not held as tensors; see training.data.imagenet"
        )
    raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def _load_dvs(root: str | Path, frames: int) -> Dataset:
    from training.data.dvs import load_cifar10_dvs

    try:
        x_train, y_train, x_test, y_test = load_cifar10_dvs(root, T=frames)
    except (FileNotFoundError, ValueError) as error:
        raise DataError(str(error)) from None
    return Dataset("cifar10_dvs", x_train, y_train, x_test, y_test, 10, (0.0,))


DATA_FIELDS = (
    "dataset",
    "data_root",
    "upsample",
    "digits_split_seed",
    "T",
    "encoding",
    "mnist1d_samples",
    "mnist1d_seed",
    "mnist1d_test_samples",
    "mnist1d_validation",
)
"""The fields of a ``TrainConfig`` that :func:`dataset_for` reads: runs that agree on them train
and test on the same tensors."""


def dataset_for(config) -> Dataset:
    """The dataset a :class:`training.runs.config.TrainConfig` (of a run or a checkpoint) trains on."""
    mnist1d = {
        "samples": config.mnist1d_samples,
        "encoding": config.encoding,
        "validation": config.mnist1d_validation,
        "seed": config.mnist1d_seed,
        "test_samples": config.mnist1d_test_samples,
    }
    return load_dataset(
        config.dataset,
        config.data_root,
        config.upsample,
        frames=config.T,
        mnist1d=mnist1d,
        split_seed=config.digits_split_seed,
    )


def random_crop_flip(x: Tensor, padding: int, pad_value: tuple[float, ...], generator) -> Tensor:
    """Random crop with zero-pixel padding plus horizontal flip (p = 0.5), per sample, in batch.

    Args:
        x: ``[B, C, H, W]`` normalized images on any device.
        padding: Pixels of padding on each side (CIFAR: 4).
        pad_value: Per-channel fill value (a black pixel after normalization).
        generator: ``torch.Generator`` on ``x``'s device.

    Returns:
        Augmented ``[B, C, H, W]``.
    """
    B, C, H, W = x.shape
    fill = torch.tensor(pad_value, dtype=x.dtype, device=x.device).expand(C).view(1, C, 1, 1)
    padded = fill.expand(B, C, H + 2 * padding, W + 2 * padding).clone()
    padded[:, :, padding : padding + H, padding : padding + W] = x
    top = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    left = torch.randint(0, 2 * padding + 1, (B,), generator=generator, device=x.device)
    rows = (top[:, None] + torch.arange(H, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (left[:, None] + torch.arange(W, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(B, device=x.device)[:, None, None, None]
    channel = torch.arange(C, device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    flip = torch.rand(B, generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


class TensorLoader:
    """Batches of ``(x, y)`` from tensors already on the device; sequences come out time-major.

    Shuffling draws from a generator seeded by ``(seed, epoch)``, so an epoch is reproducible on
    its own (which makes resuming a run bit-identical without saving mid-epoch state).

    Args:
        x: ``[N, ...]`` inputs.
        y: ``[N]`` labels.
        batch_size: Samples per batch (the last batch may be smaller).
        shuffle: Draw a new permutation every epoch.
        seed: Base seed of the per-epoch generator.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool = False, seed: int = 0):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed

    is_sharded = False  # yields global batches; the trainer takes each rank's shard

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def generator(self, epoch: int) -> torch.Generator:
        """The generator of one epoch (also used for its augmentation)."""
        return torch.Generator(self.x.device).manual_seed(self.seed * 1_000_003 + epoch)

    def batches(self, epoch: int = 0, generator: torch.Generator | None = None) -> Iterator:
        """Yield ``(x [B, ...] or [T, B, ...], y [B])`` for one epoch."""
        order = None
        if self.shuffle:
            generator = generator or self.generator(epoch)
            order = torch.randperm(len(self.y), generator=generator, device=self.x.device)
        for start in range(0, len(self.y), self.batch_size):
            index = slice(start, start + self.batch_size)
            if order is not None:
                index = order[index]
            x = self.x[index]
            yield (x.transpose(0, 1) if x.ndim == 5 else x), self.y[index]

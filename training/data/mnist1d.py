"""MNIST-1D (Greydanus & Kobak, ICML 2024), generated offline, cached, and encoded for an SNN.

The data come from ``mnist1d.data.make_dataset(args)`` (package ``mnist1d``, Apache-2.0) with the
package's default arguments (``GENERATION_ARGS``: 5,000 samples, 80 % train, length 40, seed 42,
i.e. 4,000 train / 1,000 test). Only ``num_samples`` can be changed
(``TrainConfig.mnist1d_samples``).
The package's ``get_dataset`` downloads a pickle over HTTP; it is never called here.

Cache: ``<data_root>/mnist1d/mnist1d-<key>.npz``, where ``key`` hashes the generation arguments and
the package version (``cache_key``). A hit reads the file and neither imports nor calls the
generator; a miss generates and writes the file atomically (``toolkit.io.atomic_write``).
``make_dataset`` seeds Python's and numpy's global generators; their states are restored after.

Normalization: ``make_dataset`` already centres and scales all 5,000 signals together. On top of
that the toolkit standardizes every split with the scalar mean and standard deviation of the
training samples it trains on (after any validation hold-out), as CIFAR is normalized with
training-set statistics. One channel, so one scalar pair.

Encodings (``TrainConfig.encoding``):

- ``static``: ``x [N, 1, 1, 40]`` (C, H, W); the model repeats the whole signal at every time
  step, as CIFAR images are fed (direct encoding);
- ``sequence``: ``x [N, T, 1, 1, 40 / T]``; time step t sees samples ``t*40/T .. (t+1)*40/T - 1``,
  so the input itself is temporal, as DVS frames are (the loader yields ``[T, B, 1, 1, 40 / T]``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from toolkit.io import atomic_write
from toolkit.errors import ConfigError, DataError

__all__ = [
    "GENERATION_ARGS",
    "TEST_SEED",
    "LENGTH",
    "ENCODINGS",
    "generation_args",
    "cache_key",
    "cache_path",
    "generate",
    "load_arrays",
    "encode",
    "load_mnist1d",
]

GENERATION_ARGS = {  # mnist1d.data.get_dataset_args() defaults, without the download URL
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}
LENGTH = GENERATION_ARGS["final_seq_length"]
TEST_SEED = 271828
"""Seed of the large common test set (``mnist1d_test_samples``); used for nothing else."""
ENCODINGS = ("static", "sequence")
_ARRAYS = ("x", "y", "x_test", "y_test")


def generation_args(samples: int = 5000, seed: int = 42) -> dict:
    """The generator's arguments: the package defaults with ``num_samples`` and ``seed``."""
    if samples < 10:
        raise ConfigError(f"mnist1d_samples must be >= 10 (one per class), got {samples}")
    return {**GENERATION_ARGS, "num_samples": int(samples), "seed": int(seed)}


def _package_version() -> str:
    try:
        return importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("the mnist1d package is not installed (pip install mnist1d)") from None


def cache_key(args: dict) -> str:
    """16 hex digits of the SHA-256 of the arguments and the ``mnist1d`` package version."""
    text = json.dumps({"args": args, "mnist1d": _package_version()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(root: str | Path, args: dict) -> Path:
    """Where the arrays generated with ``args`` are cached under ``root``."""
    return Path(root) / "mnist1d" / f"mnist1d-{cache_key(args)}.npz"


def generate(args: dict) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` (no download); global RNG states are left unchanged.

    Returns:
        ``x [N_train, 40]`` float32, ``y [N_train]`` int64, ``x_test``, ``y_test``.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    package_args = get_dataset_args()
    vars(package_args).update(args)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(package_args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {
        "x": np.asarray(data["x"], np.float32),
        "y": np.asarray(data["y"], np.int64),
        "x_test": np.asarray(data["x_test"], np.float32),
        "y_test": np.asarray(data["y_test"], np.int64),
    }


def load_arrays(root: str | Path, samples: int = 5000, seed: int = 42) -> dict[str, np.ndarray]:
    """The generated arrays, from the cache when present, else generated and cached.

    Raises:
        DataError: If a cache file is unreadable (delete it to regenerate).
    """
    args = generation_args(samples, seed)
    path = cache_path(root, args)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in _ARRAYS}
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(f"unreadable MNIST-1D cache {path} ({error}); delete it") from None
    arrays = generate(args)
    meta = np.array(json.dumps({"args": args, "mnist1d": _package_version()}, sort_keys=True))
    atomic_write(path, lambda handle: np.savez(handle, **arrays, meta=meta))
    return arrays


def encode(x: Tensor, encoding: str, T: int) -> Tensor:
    """``[N, 40]`` signals as model inputs: ``[N, 1, 1, 40]`` or ``[N, T, 1, 1, 40 / T]``.

    Raises:
        ConfigError: On an unknown encoding, or ``sequence`` with ``T`` not dividing the length.
    """
    N, length = x.shape
    if encoding == "static":
        return x.reshape(N, 1, 1, length)
    if encoding != "sequence":
        raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if T < 1 or length % T:
        raise ConfigError(f"sequence encoding needs T dividing {length}, got T={T}")
    return x.reshape(N, T, 1, 1, length // T)


def load_mnist1d(
    root: str | Path = "data",
    samples: int = 5000,
    encoding: str = "static",
    T: int = 4,
    validation: float = 0.0,
    seed: int = 42,
    test_samples: int = 0,
):
    """MNIST-1D as tensors ``(x, y, x_test, y_test)``, standardized with training statistics.

    Args:
        root: Data folder; the cache lives in ``root/mnist1d``.
        samples: Generator ``num_samples`` (train 80 %, test 20 %).
        encoding: ``static`` or ``sequence`` (see the module docstring).
        T: Time steps (``sequence`` only).
        validation: If > 0, hold out this fraction of the training split (its last samples; the
            generator already shuffled them) and return it in place of the test split.
        seed: Generator seed of the draw (its training split, and its own test split).
        test_samples: If > 0, the test split is instead ``test_samples`` samples generated with
            :data:`TEST_SEED` (the same set for every draw and run).

    Raises:
        ConfigError: On a bad encoding, T, validation fraction, or both ``validation`` and
            ``test_samples``.
    """
    if not 0.0 <= validation < 1.0:
        raise ConfigError(f"mnist1d_validation must be in [0, 1), got {validation}")
    if validation > 0 and test_samples > 0:
        raise ConfigError("mnist1d_validation and mnist1d_test_samples exclude each other")
    arrays = load_arrays(root, samples, seed)
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    x_test, y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])
    if test_samples > 0:
        common = load_arrays(root, test_samples, TEST_SEED)  # every generated sample is a test one
        x_test = torch.from_numpy(np.concatenate([common["x"], common["x_test"]]))
        y_test = torch.from_numpy(np.concatenate([common["y"], common["y_test"]]))
    if validation > 0:
        keep = len(y) - max(1, round(validation * len(y)))
        x, y, x_test, y_test = x[:keep], y[:keep], x[keep:], y[keep:]
    mean, std = x.mean(), x.std()
    x, x_test = (x - mean) / std, (x_test - mean) / std
    x, x_test = encode(x, encoding, T), encode(x_test, encoding, T)
    return x, y, x_test, y_test

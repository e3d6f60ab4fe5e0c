"""CIFAR10-DVS as tensors, read from the original jAER ``.aedat`` files (no tonic, no torchvision).

Pipeline, as in the TET paper (Sec. 5, "0.9k training samples" per class) and SpikingJelly 2.0:

1. ``read_aedat``: header lines starting with ``#``, then big-endian uint32 pairs
   ``(address, timestamp)``; ``x = (a & 0xFE) >> 1``, ``y = (a & 0x7F00) >> 8``, ``p = a & 1``.
   SpikingJelly's ``CIFAR10DVS`` then transposes and mirrors the sensor and inverts polarity,
   ``(x, y, p) <- (127 - y, 127 - x, 1 - p)`` (see jackd/events-tfds PR #1); we do the same, so our
   frames equal SpikingJelly's ``frames_number_T_split_by_number`` frames.
2. ``integrate_frames``: T slices with equal event counts (``split_by='number'``: slice i holds
   events ``[i*(N//T), (i+1)*(N//T))``, the last slice also takes the remainder), counted into
   ``[T, 2, 128, 128]`` float frames; channel 0 holds ``p == 0`` events, channel 1 the rest.
3. ``resize_frames``: 128x128 -> 48x48 with bilinear interpolation and antialiasing. The official
   TET loader used ``transforms.Resize((48, 48))`` on PIL images, i.e. PIL's bilinear filter, which
   antialiases when shrinking; ``F.interpolate(..., mode='bilinear', antialias=True)`` is the
   tensor filter torchvision uses to match PIL. (``area`` would also preserve mass but differs
   from the official filter at the non-integer factor 128/48.)
4. Frames are cached once per sample, written atomically, as
   ``<cache_dir>/frames_T{T}_{size}/<class>/<name>.npz``. The cache is keyed by T and size only:
   delete it after changing any convention in this module.
5. Split per class: the first 90% of the files in natural name order (``..._2`` before ``..._10``;
   900 of 1000, official 2024 code) are train, the rest test. No random split.

Differences to the official preprocessing (``preprocess/dvscifar_dataloader.py``), kept on purpose
in favour of the SpikingJelly conventions: the official slicing drops the ``N mod 10`` remainder
events, each frame is divided by its own maximum and quantized to uint8 by ``ToPILImage``, and the
MATLAB ``.mat`` export may orient the sensor differently. Here frames are raw event counts (a global
scale would be absorbed by the BN after the first conv; the per-frame maximum is not a global
scale). Weights trained on the official preprocessed data may therefore see shifted statistics.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit.io import atomic_write

__all__ = [
    "CLASSES",
    "SENSOR_SIZE",
    "read_aedat",
    "integrate_frames",
    "resize_frames",
    "load_cifar10_dvs",
    "draw_augmentation",
    "flip_roll",
    "augment_dvs",
]

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SENSOR_SIZE = 128
_SUFFIXES = (".aedat", ".npz")


def read_aedat(path: str | Path) -> dict[str, np.ndarray]:
    """Decode a CIFAR10-DVS jAER AEDAT 2.0 file with SpikingJelly's orientation.

    Args:
        path: An ``.aedat`` file.

    Returns:
        ``{"t", "x", "y", "p"}``: int64 arrays of length N; ``x, y`` in ``[0, 127]``, ``p`` in
        ``{0, 1}``, after ``(x, y, p) <- (127 - y_raw, 127 - x_raw, 1 - p_raw)``.

    Raises:
        ValueError: If the event block is not a whole number of 8-byte records.
    """
    data = Path(path).read_bytes()
    offset = 0
    while data.startswith(b"#", offset):
        end = data.find(b"\n", offset)
        offset = len(data) if end < 0 else end + 1
    if (len(data) - offset) % 8:
        raise ValueError(f"{path}: {len(data) - offset} event bytes is not a multiple of 8")
    words = np.frombuffer(data, dtype=">u4", offset=offset).astype(np.int64)
    address, timestamp = words[0::2], words[1::2]
    x_raw, y_raw, p_raw = (address & 0xFE) >> 1, (address & 0x7F00) >> 8, address & 1
    return {"t": timestamp, "x": 127 - y_raw, "y": 127 - x_raw, "p": 1 - p_raw}


def integrate_frames(
    events: dict[str, np.ndarray], T: int, height: int = SENSOR_SIZE, width: int = SENSOR_SIZE
) -> np.ndarray:
    """Count events into ``T`` frames of equal event counts (SpikingJelly ``split_by='number'``).

    Args:
        events: ``{"x", "y", "p"}`` arrays in time order (``t`` is not needed).
        T: Number of frames.
        height: Frame height (y range).
        width: Frame width (x range).

    Returns:
        Frames ``[T, 2, height, width]`` float32; ``frames[t, c, y, x]`` counts events.

    Raises:
        ValueError: If ``T < 1`` or an event lies outside the frame.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    x, y = np.asarray(events["x"], np.int64), np.asarray(events["y"], np.int64)
    channel = (np.asarray(events["p"]) != 0).astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height):
        raise ValueError(f"events outside the {height}x{width} frame")
    per_slice = x.size // T
    index = np.arange(x.size)
    # Slice i = [i*per_slice, (i+1)*per_slice); the last slice also takes the remainder.
    segment = np.minimum(index // per_slice, T - 1) if per_slice else np.full_like(index, T - 1)
    flat = ((segment * 2 + channel) * height + y) * width + x
    counts = np.bincount(flat, minlength=T * 2 * height * width)
    return counts.reshape(T, 2, height, width).astype(np.float32)


def resize_frames(frames: np.ndarray | Tensor, size: int) -> Tensor:
    """Resize frames ``[T, 2, H, W]`` to float32 ``[T, 2, size, size]``, bilinear with antialias."""
    frames = torch.as_tensor(frames, dtype=torch.float32)
    if frames.shape[-2:] == (size, size):
        return frames.clone()
    return F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _class_files(root: Path) -> dict[str, list[Path]]:
    """Per class, the ``.aedat``/``.npz`` files in natural name order."""
    layout = f"expected {root}/airplane/*.aedat (or *.npz), ..., {root}/truck/*.aedat"
    files = {}
    for name in CLASSES:
        found = sorted(
            (p for p in (root / name).glob("*") if p.suffix in _SUFFIXES), key=_natural_key
        )
        if not found:
            raise FileNotFoundError(f"no .aedat or .npz files under {root / name}/; {layout}")
        stems = [p.stem for p in found]
        if len(set(stems)) != len(stems):
            raise ValueError(f"{root / name}: a sample exists both as .aedat and as .npz")
        files[name] = found
    return files


def _source_frames(path: Path, T: int) -> np.ndarray:
    """``[T, 2, H, W]`` frames from an ``.aedat`` file or a SpikingJelly ``.npz`` file."""
    if path.suffix == ".aedat":
        return integrate_frames(read_aedat(path), T)
    with np.load(path) as data:
        if "frames" in data:  # SpikingJelly frames_number_*: [T, 2, H, W] event counts
            frames = data["frames"]
            if frames.ndim != 4 or frames.shape[:2] != (T, 2):
                raise ValueError(f"{path}: frames {frames.shape}, expected [T={T}, 2, H, W]")
            return frames
        if {"x", "y", "p"} <= set(data):  # SpikingJelly events_np: already oriented
            return integrate_frames({key: data[key] for key in ("x", "y", "p")}, T)
    raise ValueError(f"{path}: expected key 'frames' or keys 't', 'x', 'y', 'p'")


def _write_frames(file, frames: Tensor) -> None:
    np.savez(file, frames=frames.numpy())  # a file object: np.savez would append ".npz" to a name


def _cached_frames(source: Path, cache: Path, T: int, size: int) -> Tensor:
    """Frames ``[T, 2, size, size]`` from the cache, computing and caching them on a miss."""
    if cache.exists():
        with np.load(cache) as data:
            return torch.from_numpy(data["frames"])
    frames = resize_frames(_source_frames(source, T), size)
    atomic_write(cache, lambda file: _write_frames(file, frames))
    return frames


def load_cifar10_dvs(
    root: str | Path,
    T: int = 10,
    size: int = 48,
    train_fraction: float = 0.9,
    cache_dir: str | Path | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CIFAR10-DVS frames with the per-class 9:1 split of the TET paper.

    Args:
        root: Folder with one subfolder per class (``CLASSES``) holding ``.aedat`` files, or
            SpikingJelly ``.npz`` files (``frames`` [T, 2, H, W], or events ``t, x, y, p``).
        T: Number of frames per sample (TET: 10).
        size: Output height = width (TET: 48).
        train_fraction: Share of each class, first in natural file-name order, used for training.
        cache_dir: Where ``frames_T{T}_{size}/`` is written (default: ``root``).

    Returns:
        ``(x_train, y_train, x_test, y_test)``: frames ``[N, T, 2, size, size]`` float32 event
        counts (batch-major; models take ``x.transpose(0, 1)``) and int64 labels ``[N]``.

    Raises:
        FileNotFoundError: If a class folder has no ``.aedat``/``.npz`` files.
        ValueError: On malformed files, frames integrated with a different ``T``, or a
            ``train_fraction`` outside ``[0, 1]``.
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in [0, 1], got {train_fraction}")
    root = Path(root)
    cache_root = Path(cache_dir if cache_dir is not None else root) / f"frames_T{T}_{size}"
    splits: tuple[list, list] = ([], [])
    labels: tuple[list, list] = ([], [])
    for label, (name, files) in enumerate(_class_files(root).items()):
        num_train = round(len(files) * train_fraction)
        for index, source in enumerate(files):
            cache = cache_root / name / f"{source.stem}.npz"
            is_test = int(index >= num_train)
            splits[is_test].append(_cached_frames(source, cache, T, size))
            labels[is_test].append(label)
    x_train, x_test = (torch.stack(s) if s else torch.empty(0, T, 2, size, size) for s in splits)
    y_train, y_test = (torch.tensor(y, dtype=torch.int64) for y in labels)
    return x_train, y_train, x_test, y_test


def draw_augmentation(
    num_samples: int, generator: torch.Generator, max_shift: int = 5
) -> tuple[Tensor, Tensor]:
    """Draw the per-sample parameters of ``augment_dvs``.

    Args:
        num_samples: Batch size B.
        generator: Source of randomness; the draws happen on its device.
        max_shift: Largest absolute shift in pixels (both ends inclusive).

    Returns:
        ``(is_flipped [B] bool, shifts [B, 2] int64)``: flip with probability 0.5; shifts along
        H and W, uniform on ``{-max_shift, ..., max_shift}``.
    """
    device = generator.device
    is_flipped = torch.rand(num_samples, generator=generator, device=device) < 0.5
    shifts = torch.randint(
        -max_shift, max_shift + 1, (num_samples, 2), generator=generator, device=device
    )
    return is_flipped, shifts


def flip_roll(x: Tensor, is_flipped: Tensor, shifts: Tensor, batch_dim: int = 0) -> Tensor:
    """Per sample: ``torch.roll(torch.flip(x, dims=(-1,)) if flipped else x, shifts, (-2, -1))``.

    Args:
        x: Frames whose last two dims are ``H, W`` and whose dim ``batch_dim`` indexes samples.
        is_flipped: Bool ``[B]``, flip horizontally (along W) first.
        shifts: Int ``[B, 2]``, circular shifts along H and W (``torch.roll`` convention).
        batch_dim: The sample dimension (0 for ``[B, T, 2, H, W]``, 1 for ``[T, B, 2, H, W]``).

    Returns:
        A tensor like ``x``; every sample is a permutation of its own pixels.
    """
    samples = x.movedim(batch_dim, 0)  # [B, ..., H, W]
    B, H, W = samples.shape[0], samples.shape[-2], samples.shape[-1]
    is_flipped, shifts = is_flipped.to(x.device), shifts.to(x.device)
    rows = (torch.arange(H, device=x.device) - shifts[:, :1]) % H  # [B, H]: roll reads i - s
    cols = (torch.arange(W, device=x.device) - shifts[:, 1:]) % W  # [B, W]
    cols = torch.where(is_flipped[:, None], W - 1 - cols, cols)  # flip happens before the roll
    ones = [1] * (samples.ndim - 3)
    samples = samples.gather(-2, rows.view(B, *ones, H, 1).expand(samples.shape))
    samples = samples.gather(-1, cols.view(B, *ones, 1, W).expand(samples.shape))
    return samples.movedim(0, batch_dim)


def augment_dvs(
    x: Tensor, generator: torch.Generator, batch_dim: int = 0, max_shift: int = 5
) -> Tensor:
    """TET's DVS training augmentation on a batch, one random draw per sample.

    Official ``DVSCifar10.__getitem__``: horizontal flip with p = 0.5, then
    ``torch.roll(shifts=(off1, off2), dims=(H, W))`` with ``off1, off2 = random.randint(-5, 5)``
    (both ends inclusive). Applied to the training set only.

    Args:
        x: Frames ``[B, T, 2, H, W]`` (``batch_dim=0``) or ``[T, B, 2, H, W]`` (``batch_dim=1``).
        generator: Source of randomness; may live on any device.
        batch_dim: The sample dimension of ``x``.
        max_shift: Largest absolute shift in pixels.

    Returns:
        Augmented frames with the shape of ``x``; ``x`` is not modified.
    """
    is_flipped, shifts = draw_augmentation(x.shape[batch_dim], generator, max_shift)
    return flip_roll(x, is_flipped, shifts, batch_dim)

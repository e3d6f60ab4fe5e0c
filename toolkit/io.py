"""Files and devices: the one ``atomic_write`` (and the CSV, JSON and ``.npz`` writers on top of
it), the one ``resolve_device``.

Every file the toolkit writes goes through :func:`atomic_write`: a temp file beside the target,
fsync, rename. A killed writer leaves the old file (or none) and a ``.<name>.*.tmp`` that
:func:`remove_stale_temporaries` deletes on the next run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from toolkit.errors import ConfigError

__all__ = [
    "DEVICES",
    "atomic_write",
    "atomic_write_text",
    "load_json",
    "remove_stale_temporaries",
    "resolve_device",
    "save_json",
    "save_npz",
    "to_numpy",
    "to_plain",
    "umask",
    "write_csv",
]

DEVICES = ("auto", "cpu", "cuda")


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: ``write(binary_file)`` to a temp file, fsync, rename over ``path``.

    The temp file lies beside ``path`` (same file system) and is removed on any failure, so
    ``path`` holds either its old content or the complete new one. The new file gets the usual
    permissions of a new file under the process umask (0644 under umask 022), not ``mkstemp``'s
    0600.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda file: file.write(text.encode()))


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> None:
    """Delete the temp files that killed writes of ``names`` left in ``folder``."""
    for name in names:
        for stale in Path(folder).glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write a CSV file (``header`` then ``rows``) atomically; returns the path."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def to_plain(value: Any) -> Any:
    """Recursively convert tensors, arrays, dataclasses and paths to JSON types; NaN -> None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        return to_plain(value.item())
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (Path, torch.dtype, torch.device)):
        return str(value)
    return value


def save_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` (converted by :func:`to_plain`) as JSON, atomically; returns the path."""
    text = json.dumps(to_plain(payload), indent=2, allow_nan=False) + "\n"
    return atomic_write(Path(path), lambda file: file.write(text.encode()))


def load_json(path: str | Path) -> Any:
    """Read a JSON result file."""
    return json.loads(Path(path).read_text())


def to_numpy(value: Any) -> Any:
    """A tensor as a NumPy array; other values unchanged."""
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else value


def save_npz(path: str | Path, arrays: dict[str, Any]) -> Path:
    """Write arrays to a compressed ``.npz``, atomically; returns the path."""
    plain = {key: np.asarray(to_numpy(value)) for key, value in arrays.items()}
    return atomic_write(Path(path), lambda file: np.savez_compressed(file, **plain))


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # some file systems do not open directories
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cpu``, ``cuda`` and ``cuda:N`` as given.

    Raises:
        ConfigError: On an unknown device name, or cuda requested without CUDA.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not (name == "cuda" or name.startswith("cuda:")):
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device

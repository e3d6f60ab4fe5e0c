"""The bottom floor: file and device utilities that every package may import.

``landscape`` imports nothing from ``training`` or ``analysis``; ``training`` may import this module
(and only such utilities) so that the toolkit has one ``atomic_write`` and one ``resolve_device``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch

from landscape.errors import ConfigError

__all__ = ["atomic_write", "atomic_write_text", "resolve_device", "DEVICES", "umask"]

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

"""Checkpoints: the only code that knows their layout.

One ``.pt`` file readable with ``torch.load(path, weights_only=True)``: tensors and plain Python
types only. Layout (``FORMAT_VERSION = 1``)::

    {"format_version": 1, "kind": "tet-landscape-checkpoint",
     "model": {"name": str, "kwargs": dict, "state_dict": dict},
     "config": dict,                       # TrainConfig fields + input_shape + num_classes
     "epoch": int, "step": int, "metrics": dict, "history": list[dict],
     "optimizer": dict | None, "scheduler": dict | None, "rng": dict,
     "provenance": {"git_commit", "git_dirty", "torch"},
     "imported_from": str}                 # training/import_official.py only

No wall-clock value is stored (the time of writing is the file's mtime), so the same training
with the same seed writes byte-identical checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from toolkit.command import provenance
from toolkit.errors import CheckpointError, ConfigError
from toolkit.io import atomic_write
from training import models
from training.runs.config import TrainConfig

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "clean_state_dict",
    "load",
    "load_raw",
    "load_state_dict_strict",
    "read",
    "save",
]

FORMAT_VERSION = 1
KIND = "tet-landscape-checkpoint"
_REQUIRED = ("format_version", "model", "config", "epoch")
IDENTITY = ("model", "dataset", "T", "method")
"""Config keys a checkpoint must state (the others may take their defaults)."""


def save(
    path: str | Path, model: nn.Module, model_name: str, model_kwargs: dict, config: dict, **state
) -> None:
    """Write a checkpoint atomically.

    Args:
        path: Destination ``.pt`` file.
        model: The model whose ``state_dict`` is stored (``module.`` prefixes are stripped).
        model_name: Registry name used to rebuild it.
        model_kwargs: Keyword options of ``training.models.build``.
        config: Plain-typed run config (must include ``input_shape`` and ``num_classes``).
        **state: ``epoch``, ``step``, ``metrics``, ``history``, ``optimizer``, ``scheduler``,
            ``rng`` and any further plain-typed entries.
    """
    checkpoint = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "model": {
            "name": model_name,
            "kwargs": dict(model_kwargs),
            "state_dict": clean_state_dict(model.state_dict()),
        },
        "config": dict(config),
        "provenance": provenance(with_time=False),
        **state,
    }
    atomic_write(path, lambda file: torch.save(checkpoint, file))


def clean_state_dict(state_dict: dict) -> dict:
    """Strip ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) key prefixes."""
    cleaned = {}
    for key, value in state_dict.items():
        while key.startswith(("module.", "_orig_mod.")):
            key = key.split(".", 1)[1]
        cleaned[key.replace("._orig_mod.", ".")] = value
    return cleaned


def load_raw(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint dict (``weights_only=True``).

    Raises:
        CheckpointError: If the file is missing, truncated, unsafe or not a toolkit checkpoint.
    """
    return _parse(Path(path), _read_bytes(Path(path)), map_location)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None


def _parse(path: Path, data: bytes, map_location: str | torch.device = "cpu") -> dict:
    """The validated checkpoint dict in ``data`` (the bytes of ``path``)."""
    if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a legacy pickle
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): not a file written "
            "by torch.save"
        )
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles before refusing them
            warnings.simplefilter("ignore")
            checkpoint = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line.upper() and "load" in line), "")
        reason = reason.replace("WeightsUnpickler error: ", "").split(" was not an allowed")[0]
        reason = reason.split(" whose module")[0][:160] or "unsupported content"
        raise CheckpointError(
            f"{path}: refused to load, it holds non-tensor objects ({reason})"
        ) from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        AttributeError,
    ) as error:  # a text file raises KeyError 105
        reason = (
            str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        )
        reason = "not a file written by torch.save" if isinstance(error, KeyError) else reason
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in _REQUIRED):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"{path} is not a tet-landscape checkpoint (found {keys}; "
            f"expected keys {list(_REQUIRED)}); "
            "to convert a state dict saved by the official TET code use training/import_official.py"
        )
    _check_layout(path, checkpoint)
    if checkpoint["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {checkpoint['format_version']}; this code reads up to "
            f"{FORMAT_VERSION}: update the toolkit"
        )
    return checkpoint


def _check_layout(path: Path, checkpoint: dict) -> None:
    """Types of the required entries, so that a malformed checkpoint fails in one line here."""
    model, version = checkpoint["model"], checkpoint["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: format_version must be an integer, got {version!r}")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise CheckpointError(f"{path}: 'model' must be a dict with name, kwargs, state_dict")
    if not isinstance(model.get("kwargs"), dict) or not isinstance(model.get("state_dict"), dict):
        raise CheckpointError(f"{path}: 'model' must be a dict with name, kwargs, state_dict")
    if not isinstance(checkpoint["config"], dict):
        raise CheckpointError(f"{path}: 'config' must be a dict of the run's settings")


def load_state_dict_strict(model: nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """``load_state_dict`` that names missing, unexpected and misshaped keys in one error line."""
    state_dict = clean_state_dict(state_dict)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", misshaped),
    ):
        if keys:
            problems.append(
                f"{label} {len(keys)}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            )
    if problems:
        raise CheckpointError(f"{source} does not fit the model: {'; '.join(problems)}")
    model.load_state_dict(state_dict)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read once: its bytes' sha256, its typed config and what rebuilds its model.

    Attributes:
        path: The file, as given.
        sha256: sha256 of the bytes that were parsed.
        config: The run's :class:`~training.runs.config.TrainConfig`.
        input_shape: Shape of one input sample, e.g. ``(1, 8, 8)``.
        num_classes: Number of classes.
        epoch: Epochs trained.
        raw: The whole checkpoint dict (weights, history, metrics, optimizer state, ...).
    """

    path: Path
    sha256: str
    config: TrainConfig
    input_shape: tuple[int, ...]
    num_classes: int
    epoch: int
    raw: dict

    @property
    def record(self) -> dict:
        """``{"path": ..., "sha256": ...}``, as result files record their inputs."""
        return {"path": str(self.path), "sha256": self.sha256}

    def model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model, rebuilt and loaded, in eval mode on ``device``.

        Raises:
            CheckpointError: If the weights do not fit the model.
        """
        spec = self.raw["model"]
        model = models.build(spec["name"], **spec["kwargs"])
        load_state_dict_strict(model, spec["state_dict"], source=str(self.path))
        return model.to(device).eval()


def read(path: str | Path) -> Checkpoint:
    """Read a checkpoint once and check that its config and its model agree.

    Raises:
        CheckpointError: If the file is missing or unreadable (see :func:`load_raw`), its config
            is invalid, or the config does not describe the stored model (another model name,
            another T or number of classes).
    """
    path = Path(path)
    data = _read_bytes(path)
    raw = _parse(path, data)
    spec, stored = raw["model"], raw["config"]
    missing = [key for key in IDENTITY if key not in stored]
    if missing:
        raise CheckpointError(
            f"{path}: its config lacks {missing}; expected the keys {list(IDENTITY)} that "
            "training/run.py writes"
        )
    try:
        config = TrainConfig.from_stored(stored)
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config is invalid: {error}") from None
    kwargs = spec["kwargs"]
    mismatches = [
        f"{key} {value!r} vs the stored model's {kwargs[key]!r}"
        for key, value in (("T", config.T), ("num_classes", stored.get("num_classes")))
        if key in kwargs and value is not None and value != kwargs[key]
    ]
    if config.model != spec["name"]:
        mismatches.insert(0, f"model {config.model!r} vs the stored {spec['name']!r}")
    if spec["name"] not in models.names():
        raise CheckpointError(f"{path}: unknown model {spec['name']!r}; known: {models.names()}")
    if mismatches:
        raise CheckpointError(f"{path}: its config disagrees with its model: {mismatches[0]}")
    num_classes = int(stored.get("num_classes", kwargs.get("num_classes", 0)))
    return Checkpoint(
        path,
        hashlib.sha256(data).hexdigest(),
        config,
        tuple(stored.get("input_shape", ())),
        num_classes,
        int(raw["epoch"]),
        raw,
    )


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the model of a checkpoint.

    Args:
        path: Checkpoint written by :func:`save`.
        device: Where to put the model.

    Returns:
        ``(model, config)``: the model in eval mode and the run's ``TrainConfig``.

    Raises:
        CheckpointError: See :func:`read`; also when the weights do not fit the model.
    """
    checkpoint = read(path)
    return checkpoint.model(device), checkpoint.config

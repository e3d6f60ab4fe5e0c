"""Checkpoints: the only code that knows their layout.

One ``.pt`` file readable with ``torch.load(path, weights_only=True)``: tensors and plain Python
types only. Layout (``FORMAT_VERSION = 1``)::

    {"format_version": 1, "kind": "tet-landscape-checkpoint",
     "model": {"name": str, "kwargs": dict, "state_dict": dict},
     "config": dict,                       # TrainConfig fields + input_shape + num_classes
     "epoch": int, "step": int, "metrics": dict, "history": list[dict],
     "optimizer": dict | None, "scheduler": dict | None, "rng": dict,
     "provenance": {"git_commit", "git_dirty", "torch"}}

No wall-clock value is stored (the time of writing is the file's mtime), so the same training
with the same seed writes byte-identical checkpoints.
"""

from __future__ import annotations

import pickle
import subprocess
import time
import zipfile
from pathlib import Path

import torch
from torch import nn

from landscape.io import atomic_write
from training import models
from training.errors import CheckpointError

__all__ = [
    "from_raw",
    "FORMAT_VERSION",
    "save",
    "load",
    "load_raw",
    "clean_state_dict",
    "provenance",
]

FORMAT_VERSION = 1
KIND = "tet-landscape-checkpoint"
_REQUIRED = ("format_version", "model", "config", "epoch")


def provenance() -> dict:
    """Code version and environment of the process writing a file."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "torch": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


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
        "provenance": {k: v for k, v in provenance().items() if k != "created"},
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
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
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


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint.

    Args:
        path: Checkpoint written by :func:`save`.
        device: Where to put the model.

    Returns:
        ``(model, config)``: the model in eval mode, and its config dict (model, dataset,
        input_shape, num_classes, T, method, tet_lambda, tet_phi, seed, ...).

    Raises:
        CheckpointError: See :func:`load_raw`; also when the weights do not fit the model.
    """
    return from_raw(load_raw(path), path, device)


def from_raw(
    checkpoint: dict, path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """:func:`load` of a checkpoint dict already read by :func:`load_raw` (``path`` names it)."""
    spec = checkpoint["model"]
    try:
        model = models.build(spec["name"], **spec["kwargs"])
    except ValueError as error:
        raise CheckpointError(f"{path}: cannot rebuild its model: {error}") from None
    load_state_dict_strict(model, spec["state_dict"], source=str(path))
    return model.to(device).eval(), dict(checkpoint["config"])

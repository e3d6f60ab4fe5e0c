"""Checkpoint -> evaluation input: the model, its config, fixed batches, their record, provenance.

The one place where the analysis commands turn a checkpoint plus a data selection (split, number
of samples, seed, batch size) into what an analysis evaluates. The Hessian, surface, sharpness,
momentum and time-step commands all stand on :func:`load_input` (or :func:`load_objective`,
which adds the loss and the landscape ``Objective``). Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from landscape import Objective
from training import checkpoint as checkpoints
from training.data import Dataset, TensorLoader, load_dataset
from training.errors import CheckpointError
from training.losses import get_loss, per_step_ce
from training.momentum import momentum_subset

__all__ = [
    "LOSSES",
    "SUBSETS",
    "DataSpec",
    "EvalInput",
    "LoadedObjective",
    "check_checkpoint",
    "checkpoint_record",
    "file_sha256",
    "load_batches",
    "load_input",
    "load_objective",
    "make_loss",
    "resolve_dtype",
    "sample_indices",
    "tensor_digest",
]

LOSSES = ("checkpoint", "sdt", "tet")
CONFIG_KEYS = ("model", "dataset", "T", "method")  # what the analyses read from a config
SUBSETS = ("seeded", "trainer")


@dataclass(frozen=True)
class DataSpec:
    """Which samples an analysis evaluates.

    Attributes:
        split: ``train`` or ``test``.
        samples: Size of the subset; ``None``: the whole split, in order.
        seed: Seed of the ``seeded`` subset.
        batch_size: Samples per batch (results of the analyses do not depend on it).
        subset: ``seeded``: a seeded subset, sorted (:func:`sample_indices`); ``trainer``: the
            subset the trainer logs gradient statistics on (``momentum_subset``, seed 0).
    """

    split: str = "train"
    samples: int | None = 1024
    seed: int = 0
    batch_size: int = 256
    subset: str = "seeded"

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")


def resolve_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` -> the torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def sample_indices(num_total: int, num_samples: int, seed: int) -> Tensor:
    """A fixed, seeded subset of ``range(num_total)``, sorted, ``[min(num_samples, num_total)]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_total, generator=generator)[:num_samples].sort().values


def tensor_digest(tensor: Tensor) -> str:
    """sha256 of a tensor's bytes (to record a data subset)."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_record(path: str | Path) -> dict:
    """Provenance of a checkpoint file: ``{"path": ..., "sha256": ...}``."""
    return {"path": str(path), "sha256": file_sha256(path)}


def check_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint and check that the analyses find what they need in it.

    Returns:
        The raw checkpoint dict.

    Raises:
        training.errors.CheckpointError: If it is missing, not a toolkit checkpoint, or its
            config lacks one of ``CONFIG_KEYS``.
    """
    raw = checkpoints.load_raw(path)
    missing = [key for key in CONFIG_KEYS if key not in raw["config"]]
    if missing:
        raise CheckpointError(
            f"{path}: its config lacks {missing}; expected the keys {list(CONFIG_KEYS)} that "
            "training/run.py writes"
        )
    return raw


@lru_cache(maxsize=4)
def _dataset(name: str, data_root: str, upsample: int, frames: int) -> Dataset:
    return load_dataset(name, data_root, upsample, frames=frames)


def _dataset_of(config: dict) -> Dataset:
    """The dataset a checkpoint's config was trained on (cached: commands load it repeatedly)."""
    root, upsample = str(config.get("data_root", "data")), int(config.get("upsample", 1))
    return _dataset(config["dataset"], root, upsample, int(config.get("T", 10)))


def _select(config: dict, spec: DataSpec) -> tuple[Tensor, Tensor, dict]:
    """The samples of ``spec`` from the checkpoint's dataset, and their record."""
    dataset = _dataset_of(config)
    x, y = (
        (dataset.x_train, dataset.y_train)
        if spec.split == "train"
        else (dataset.x_test, dataset.y_test)
    )
    record = {"dataset": config["dataset"], "split": spec.split}
    if spec.subset == "trainer":
        x, y = momentum_subset(x, y, len(y) if spec.samples is None else spec.samples)
        return x, y, {**record, "num_samples": len(y), "subset": "trainer"}
    if spec.samples is None:
        return x, y, {**record, "num_samples": len(y), "batch_size": spec.batch_size}
    indices = sample_indices(len(y), spec.samples, spec.seed)
    record.update(num_samples=len(indices), seed=spec.seed, batch_size=spec.batch_size)
    return x[indices], y[indices], {**record, "indices_sha256": tensor_digest(indices)}


def load_batches(config: dict, spec: DataSpec) -> tuple[list[tuple[Tensor, Tensor]], dict]:
    """The fixed batches of ``spec`` from a checkpoint config's dataset (on the CPU), and their
    record (dataset, split, number of samples, seed, batch size, digest of the indices)."""
    x, y, record = _select(config, spec)
    return list(TensorLoader(x, y, spec.batch_size).batches()), record


@dataclass(frozen=True)
class EvalInput:
    """What an analysis evaluates: a checkpoint's model and config and fixed batches.

    Attributes:
        path: The checkpoint file, as given.
        model: The model, in eval mode, on the requested device.
        config: The checkpoint's config dict.
        loader: The fixed samples (no shuffling) on the model's device.
        batches: ``list(loader.batches())``.
        data: Record of the samples (dataset, split, number, seed, digest of the indices).
    """

    path: Path
    model: nn.Module
    config: dict
    loader: TensorLoader
    batches: list[tuple[Tensor, Tensor]]
    data: dict

    def provenance(self) -> dict:
        """The checkpoint's path and sha256."""
        return checkpoint_record(self.path)


def load_input(
    path: str | Path, data: DataSpec = DataSpec(), device: torch.device | str = "cpu"
) -> EvalInput:
    """Load a checkpoint and the fixed samples of ``data``, both on ``device``.

    Raises:
        training.errors.ToolkitError: On a missing or unreadable checkpoint or dataset.
    """
    model, config = checkpoints.from_raw(check_checkpoint(path), path, device)
    x, y, record = _select(config, data)
    loader = TensorLoader(x.to(device), y.to(device), data.batch_size)
    return EvalInput(Path(path), model, config, loader, list(loader.batches()), record)


def make_loss(
    config: dict, loss: str = "checkpoint", time_step: int | None = None
) -> tuple[Callable[[Tensor, Tensor], Tensor], str]:
    """The loss callable for outputs ``[T, B, C]`` and labels ``[B]``, and its name.

    Args:
        config: Checkpoint config (``method``, ``tet_lambda``, ``tet_phi``, ``T``).
        loss: ``checkpoint`` (the training method), ``sdt`` or ``tet``.
        time_step: If given, ``L_t = CE(O[t], y)`` instead (``loss`` must be ``checkpoint``).

    Raises:
        ValueError: On an unknown loss, a time step outside ``[0, T)``, or both options.
    """
    if time_step is not None:
        T = int(config["T"])
        if loss != "checkpoint":
            raise ValueError(
                f"--time-step analyses L_t = CE(O[t], y); it cannot be combined with --loss {loss}"
            )
        if not 0 <= time_step < T:
            raise ValueError(f"--time-step must be in [0, T-1] = [0, {T - 1}], got {time_step}")
        return (lambda outputs, labels: per_step_ce(outputs, labels)[time_step]), f"ce_t{time_step}"
    method = config["method"] if loss == "checkpoint" else loss
    if method not in ("sdt", "tet"):
        raise ValueError(f"unknown loss {method!r}; expected one of {LOSSES}")
    name = (
        method
        if method == "sdt"
        else f"tet(lambda={config['tet_lambda']}, phi={config['tet_phi']})"
    )
    return get_loss(method, config.get("tet_lambda", 0.05), config.get("tet_phi", 1.0)), name


@dataclass(frozen=True)
class LoadedObjective:
    """A checkpoint's model and config, its evaluation batches and the objective on them."""

    model: nn.Module
    config: dict
    objective: Objective
    batches: list[tuple[Tensor, Tensor]]
    data: dict
    loss_name: str


def load_objective(
    path: str | Path,
    data: DataSpec = DataSpec(),
    *,
    loss: str = "checkpoint",
    time_step: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedObjective:
    """:func:`load_input` on the CPU plus the loss and the ``Objective`` on ``device``/``dtype``.

    Raises:
        training.errors.ToolkitError: On a missing or unreadable checkpoint or dataset.
        ValueError: On invalid loss options.
    """
    loaded = load_input(path, data)
    loss_fn, loss_name = make_loss(loaded.config, loss, time_step)
    objective = Objective(loaded.model, loss_fn, loaded.batches, dtype=dtype, device=device)
    return LoadedObjective(
        loaded.model, loaded.config, objective, loaded.batches, loaded.data, loss_name
    )

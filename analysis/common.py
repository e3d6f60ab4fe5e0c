"""Shared pieces of the analysis commands: common flags, checkpoint -> Objective, provenance.

The only module that joins ``training`` (checkpoints, data, losses) to ``landscape`` (the
engine). Everything here is called from a command's ``main()``; nothing runs at import time.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from landscape import LinearOperator, Objective, atomic_write
from landscape.io import resolve_device
from training import checkpoint as checkpoints
from training.config import add_config_args, config_from_args, option
from training.data import TensorLoader, dataset_for
from training.losses import get_loss, per_step_ce

__all__ = [
    "option",
    "DataConfig",
    "add_config_args",
    "add_output_args",
    "add_common_args",
    "config_from_args",
    "LOSSES",
    "ProgressOperator",
    "resolve_device",
    "resolve_dtype",
    "sample_indices",
    "tensor_digest",
    "file_sha256",
    "make_loss",
    "LoadedObjective",
    "load_objective",
    "provenance",
    "write_csv",
    "existing_outputs",
]

LOSSES = ("checkpoint", "sdt", "tet")


@dataclass(frozen=True)
class DataConfig:
    """What every analysis command evaluates: the loss, the data subset, device and dtype."""

    loss: str = option("checkpoint", "loss: the checkpoint's method, or sdt / tet", choices=LOSSES)
    time_step: int | None = option(None, "analyse L_t = CE(O[t], y) of time step t only")
    samples: int = option(1024, "size of the fixed, seeded subset of the split")
    split: str = option("train", "dataset split of the samples", choices=("train", "test"))
    batch_size: int = option(256, "samples per forward pass; results do not depend on it")
    device: str = option("auto", "auto: cuda when available", choices=("auto", "cpu", "cuda"))
    dtype: str = option(
        "float32", "dtype of parameters, data and products", choices=("float32", "float64")
    )
    seed: int = option(0, "seed of the sample subset and of the random probes")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    """The output flags every analysis command shares (STYLE.md section 6)."""
    add = parser.add_argument
    add(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <first checkpoint's folder>/analysis)",
    )
    add("--overwrite", action="store_true", help="replace existing output files")
    add("--quiet", action="store_true", help="no progress bars on stderr")
    add("--dry-run", action="store_true", help="one small batch and tiny settings (smoke tests)")


def add_common_args(parser: argparse.ArgumentParser, samples: int = 1024) -> None:
    """All shared flags: the :class:`DataConfig` fields plus the output flags.

    Args:
        parser: Parser to extend.
        samples: Default of ``--samples``.
    """
    add_config_args(parser, DataConfig)
    parser.set_defaults(samples=samples)
    add_output_args(parser)


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
                "--time-step analyses L_t = CE(O[t], y); it cannot be combined "
                f"with --loss {loss}"
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


@lru_cache(maxsize=4)
def _dataset(name: str, data_root: str, upsample: int):
    return dataset_for({"dataset": name, "data_root": data_root, "upsample": upsample})


class LoadedObjective(NamedTuple):
    """A checkpoint's model and config, its evaluation batches and the objective on them."""

    model: nn.Module
    config: dict
    objective: Objective
    batches: list[tuple[Tensor, Tensor]]
    data: dict
    loss_name: str


def load_objective(
    path: str | Path,
    *,
    loss: str = "checkpoint",
    time_step: int | None = None,
    split: str = "train",
    samples: int = 1024,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> LoadedObjective:
    """Load a checkpoint and build the objective on a fixed, seeded subset of its data.

    Raises:
        training.errors.ToolkitError: On a missing or unreadable checkpoint or dataset.
        ValueError: On invalid loss options.
    """
    model, config = checkpoints.load(path)
    loss_fn, loss_name = make_loss(config, loss, time_step)
    dataset = _dataset(
        config["dataset"], str(config.get("data_root", "data")), int(config.get("upsample", 1))
    )
    x, y = (
        (dataset.x_train, dataset.y_train) if split == "train" else (dataset.x_test, dataset.y_test)
    )
    indices = sample_indices(len(y), samples, seed)
    batches = list(TensorLoader(x[indices], y[indices], batch_size).batches())
    objective = Objective(model, loss_fn, batches, dtype=dtype, device=device)
    data = {
        "dataset": config["dataset"],
        "split": split,
        "num_samples": len(indices),
        "seed": seed,
        "batch_size": batch_size,
        "indices_sha256": tensor_digest(indices),
    }
    return LoadedObjective(model, config, objective, batches, data, loss_name)


def provenance() -> dict:
    """Code version and environment of this process (the checkpoint's fields plus more)."""
    return {
        **checkpoints.provenance(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "argv": list(sys.argv),
    }


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """Write a CSV file atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, lambda file: file.write(text.getvalue().encode()))


def existing_outputs(paths: Sequence[Path]) -> list[Path]:
    """The paths among ``paths`` that already exist."""
    return [path for path in paths if path.exists()]


class ProgressOperator(LinearOperator):
    """Ticks a progress bar (anything with ``update(n)``) per product; else the wrapped operator."""

    def __init__(self, operator: LinearOperator, bar: Any) -> None:
        super().__init__(operator.shape[0], operator.dtype, operator.device, operator.is_symmetric)
        self.operator, self.bar, self.curvature = operator, bar, operator.curvature

    def _matvec(self, v: Tensor) -> Tensor:
        self.bar.update(1)
        return self.operator @ v

"""Shared pieces of the analysis commands: common flags, provenance, CSV output, progress.

Checkpoint loading lives in :mod:`analysis.inputs`. Everything here is called from a command's
``main()``; nothing runs at import time.
"""

from __future__ import annotations

import argparse
import csv
import io
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from analysis.inputs import LOSSES, DataSpec
from landscape import LinearOperator, atomic_write
from landscape.io import resolve_device
from training import checkpoint as checkpoints
from training.config import add_config_args, config_from_args, option

__all__ = [
    "option",
    "DataConfig",
    "add_config_args",
    "add_output_args",
    "add_common_args",
    "config_from_args",
    "ProgressOperator",
    "resolve_device",
    "provenance",
    "write_csv",
    "existing_outputs",
]


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

    def data_spec(self) -> DataSpec:
        """The samples these settings select."""
        return DataSpec(self.split, self.samples, self.seed, self.batch_size)


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
        self.block_size = operator.block_size

    def _matvec(self, v: Tensor) -> Tensor:
        self.bar.update(1)
        return self.operator @ v

    def _matmat(self, V: Tensor) -> Tensor:  # a block stays one batched call of the operator
        self.bar.update(V.shape[1])
        return self.operator @ V

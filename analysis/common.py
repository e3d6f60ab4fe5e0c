"""Shared pieces of the analysis commands: common flags, provenance, CSV output, progress, errors.

Every analysis command shares these flags, with the same name, default, choices and help
(``tests/analysis/test_commands.py`` compares them): positional ``CHECKPOINT`` files, ``--out``,
``--device {auto,cpu,cuda}`` (default ``auto``), ``--seed``, ``--split`` (default ``train`` in
every command), ``--quiet``, ``--overwrite``, ``--dry-run``. Exit status: 2 for a bad command line
(flags, a missing or malformed checkpoint, an output folder that cannot be written), 1 for a
failure while computing, 130 for Ctrl-C; every error is one line on stderr, never a traceback.

Checkpoint loading lives in :mod:`analysis.inputs`. Everything here is called from a command's
``main()``; nothing runs at import time.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from analysis.inputs import LOSSES, DataSpec, check_checkpoint
from landscape import LinearOperator, atomic_write
from landscape.io import DEVICES, resolve_device
from training import checkpoint as checkpoints
from training.config import add_config_args, config_from_args, option
from training.errors import ToolkitError

__all__ = [
    "option",
    "DataConfig",
    "add_config_args",
    "add_output_args",
    "add_common_args",
    "add_checkpoint_args",
    "check_inputs",
    "check_output_dir",
    "command",
    "Progress",
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
    split: str = option(
        "train", "dataset split of the samples (train in every command)", choices=("train", "test")
    )
    batch_size: int = option(256, "samples per forward pass; results do not depend on it")
    device: str = option("auto", "auto: cuda when available", choices=DEVICES)
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
    add("--quiet", action="store_true", help="no progress on stderr")
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


def add_checkpoint_args(
    parser: argparse.ArgumentParser,
    nargs: str | None = "+",
    help: str = "checkpoint files (.pt) written by training/run.py",
) -> None:
    """The positional checkpoints: metavar ``CHECKPOINT``, dest ``checkpoints`` (``checkpoint``
    when ``nargs`` is None)."""
    dest = "checkpoint" if nargs is None else "checkpoints"
    parser.add_argument(dest, nargs=nargs, type=Path, metavar="CHECKPOINT", help=help)


def check_inputs(parser: argparse.ArgumentParser, paths: Sequence[Path], out: Path | None) -> None:
    """Before any work: every checkpoint readable and complete, the output folder writable.

    ``parser.error`` (one line, exit 2) on the first problem.
    """
    for path in paths:
        try:
            check_checkpoint(path)
        except ToolkitError as error:
            parser.error(str(error).splitlines()[0])
    if out is not None:
        problem = check_output_dir(out)
        if problem:
            parser.error(problem)


def check_output_dir(out: Path) -> str | None:
    """Create ``out`` and try writing a file there; the problem in one line, or None."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except FileExistsError:
        return f"--out {out} is a file; expected a folder for the results"
    except OSError as error:
        return f"--out {out} is not a writable folder ({error.strerror or error}); choose another"
    return None


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command's ``main``: Ctrl-C is one line and exit 130, a ``ToolkitError`` one line
    and exit 1; no traceback for either."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted; run the same command again to resume or redo it", file=sys.stderr)
            return 130
        except ToolkitError as error:
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1

    return wrapped


class Progress:
    """Progress with a total and a time estimate on stderr.

    A ``tqdm`` bar when stderr is a terminal; otherwise (a log file) one plain line at most every
    ``every`` seconds and one at the end, never ``\\r`` lines. ``quiet`` prints nothing.

    Args:
        total: Expected number of units (an estimate is fine: ``~`` marks it).
        desc: What is counted, e.g. the checkpoint's name.
        unit: The unit, e.g. ``HVP`` or ``point``.
        quiet: Print nothing.
        every: Seconds between plain lines.
        estimate: ``total`` is an upper estimate (Lanczos may stop earlier).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        quiet: bool = False,
        every: float = 10.0,
        estimate: bool = False,
    ) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.count, self.start, self.estimate = 0, time.monotonic(), estimate
        self.last = self.start
        self.bar, self.quiet = None, quiet
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(exc[0] is None)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and time.monotonic() - self.last >= self.every:
            self._line()

    def _line(self) -> None:
        self.last, elapsed = time.monotonic(), time.monotonic() - self.start
        total = f"{'~' if self.estimate else ''}{self.total}" if self.total else "?"
        text = f"{self.desc}: {self.count}/{total} {self.unit}, {elapsed:.0f} s"
        if self.total and 0 < self.count < self.total:
            text += f", ~{elapsed * (self.total - self.count) / self.count:.0f} s left"
        print(text, file=sys.stderr, flush=True)

    def close(self, done: bool = True) -> None:
        """End the bar; a final plain line when not on a terminal."""
        if self.bar is not None:
            self.bar.close()
        elif not self.quiet and done:
            self._line()


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

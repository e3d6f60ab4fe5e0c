"""The runner of every analysis command that evaluates checkpoints.

A command declares only what is its own: its description and example, its settings class (its
flags are generated from it), which of the shared data flags it takes and its default
``--samples``, the files it writes, and ``run(task) -> int``. The runner does the rest, the same
way for every command:

1. flags: positional ``CHECKPOINT`` files (or run folders), the command's settings, the shared
   data flags of :class:`DataSettings` (``--loss``, ``--time-step``, ``--samples``, ``--split``,
   ``--batch-size``, ``--device``, ``--dtype``, ``--seed``) and ``--out``, ``--overwrite``,
   ``--quiet``, ``--dry-run``; every bad value is one line and exit 2;
2. ``--dry-run``: the settings' ``dry_run()`` and at most 32 samples;
3. the output folder (``--out``, default ``<first run folder>/analysis``) is checked before any
   work: existing results are kept unless ``--overwrite``, temp files of killed writes removed;
4. every checkpoint is read once (its sha256 from the same bytes) and checked, before any
   compute; a missing, corrupt, malicious or inconsistent one is one line and exit 2;
5. ``run(task)`` computes and writes through :class:`Task` (atomic CSV and JSON with the
   provenance envelope, and per-checkpoint partial results that a killed run reuses); errors are
   one line with exit 1, Ctrl-C exit 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.measures.inputs import (
    Datasets,
    DataSettings,
    DataSpec,
    EvalInput,
    Evaluation,
    load_input,
    resolve_dtype,
)
from toolkit.command import ArgumentParser, add_output_args, command, envelope, prepare_output
from toolkit.io import atomic_write, resolve_device, save_json, write_csv
from toolkit.settings import add_config_args, config_from_args
from training.runs import checkpoint as checkpoints
from training.runs.checkpoint import Checkpoint
from training.runs.layout import RunFiles

__all__ = ["CheckpointCommand", "PARTIAL", "Task", "default_out"]

PARTIAL = ".partial"
"""Folder of a command's per-checkpoint partial results inside its output folder."""


def default_out(path: Path) -> Path:
    """Where results about ``path`` (a checkpoint or a run folder) go without ``--out``."""
    return (RunFiles(path) if path.is_dir() else RunFiles.of_checkpoint(path)).analysis


@dataclass
class Task:
    """What a command's ``run`` receives: everything checked, every checkpoint read once.

    Attributes:
        settings: The command's own settings (``--dry-run`` applied), or None.
        data: The shared data flags.
        paths: The positional inputs as given (checkpoints or run folders).
        checkpoints: The checkpoint of each input (a run folder's ``last.pt``), read once.
        out: The output folder, checked writable.
        evaluation: Loss, dtype, device, seed and quietness for the measures.
        overwrite: Replace existing results (and partial ones).
        datasets: Datasets loaded for this task (shared by its checkpoints).
    """

    settings: object
    data: DataSettings
    paths: list[Path]
    checkpoints: list[Checkpoint]
    out: Path
    evaluation: Evaluation
    overwrite: bool = False
    datasets: Datasets = field(default_factory=Datasets)

    def input(self, checkpoint: Checkpoint, spec: DataSpec | None = None) -> EvalInput:
        """The checkpoint's model and samples (``spec``, or the data flags' samples), on the
        CPU; measures move their objectives to ``evaluation.device``."""
        return load_input(checkpoint, spec or self.data.spec(), "cpu", self.datasets)

    def write_csv(self, name: str, columns: Sequence[str], rows: list[dict]) -> Path:
        """Rows (dicts) as ``out/name``, atomically, in ``columns`` order."""
        return write_csv(self.out / name, columns, [[row[c] for c in columns] for row in rows])

    def partial(self, index: int, checkpoint: Checkpoint, settings: dict):
        """The partial result saved for input ``index`` by an earlier, killed run of the same
        computation (the same checkpoint bytes, ``settings``, data flags, dtype and device), or
        None. Reused even with ``--overwrite``: it is what computing again gives."""
        path = self._partial_path(index)
        if not path.is_file():
            return None
        import torch

        saved = torch.load(path, weights_only=True)
        return saved["value"] if saved["key"] == self._partial_key(checkpoint, settings) else None

    def save_partial(self, index: int, checkpoint: Checkpoint, settings: dict, value) -> None:
        """Keep ``value`` (plain types: NaN survives) for input ``index``, atomically, until
        :meth:`clear_partials`."""
        import torch

        payload = {"key": self._partial_key(checkpoint, settings), "value": value}
        self._partial_path(index).parent.mkdir(exist_ok=True)
        atomic_write(self._partial_path(index), lambda file: torch.save(payload, file))

    def clear_partials(self) -> None:
        """Delete the partial results (after the outputs were written)."""
        shutil.rmtree(self.out / PARTIAL, ignore_errors=True)

    def _partial_path(self, index: int) -> Path:
        return self.out / PARTIAL / f"{index:04d}.pt"

    def _partial_key(self, checkpoint: Checkpoint, settings: dict) -> dict:
        evaluation = dataclasses.asdict(self.evaluation)
        evaluation = {k: str(v) for k, v in evaluation.items() if k != "quiet"}
        data = {k: str(v) for k, v in dataclasses.asdict(self.data).items()}
        return {
            "checkpoint": checkpoint.sha256,
            "settings": {k: str(v) for k, v in settings.items()},
            "data": data,
            "evaluation": evaluation,
        }

    def write_json(self, name: str, kind: str, settings: dict | None = None, **entries) -> Path:
        """``out/name`` with the provenance envelope around ``entries``; ``settings`` default to
        the data flags and the command's settings."""
        if settings is None:
            settings = {**dataclasses.asdict(self.data), **_plain(self.settings)}
        inputs = [c.record for c in self.checkpoints]
        return save_json(self.out / name, envelope(kind, settings, inputs=inputs, **entries))


def _plain(settings) -> dict:
    return dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else {}


@dataclass(frozen=True)
class CheckpointCommand:
    """One analysis command over checkpoints (see the module docstring for what it gets free).

    Attributes:
        name: The script's name without ``.py`` (``hessian``).
        doc: Its description (the module docstring).
        example: One or more example command lines.
        run: ``run(task) -> exit status``: compute, write through the task, print a summary.
        settings: The command's settings class (flags generated from it), or None.
        outputs: ``outputs(settings) -> file names`` it writes into the output folder.
        data_fields: The :class:`DataSettings` fields it offers as flags.
        samples: Default of ``--samples`` (None: every sample of the split).
        single: One positional checkpoint instead of one or more.
        pair: Exactly two positional checkpoints (``A B``) instead of one or more.
        out_folder: ``out_folder(paths) -> folder`` without ``--out`` (None: the first input's
            run folder's ``analysis/``).
        run_folders: Positional inputs may be run folders (their ``last.pt`` is read).
    """

    name: str
    doc: str
    example: str
    run: Callable[[Task], int]
    settings: type | None = None
    outputs: Callable[[object], Sequence[str]] = lambda settings: ()
    data_fields: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(DataSettings))
    samples: int | None = 1024
    single: bool = False
    pair: bool = False
    out_folder: Callable[[list[Path]], Path] | None = None
    run_folders: bool = False

    def build_parser(self) -> argparse.ArgumentParser:
        """The command-line interface."""
        parser = ArgumentParser(
            prog=f"{self.name}.py",
            description=self.doc,
            epilog=f"example:\n{self.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        what = (
            "checkpoint (.pt) written by training/run.py"
            if self.single
            else ("checkpoints (.pt) written by training/run.py")
        )
        if self.pair:
            what = "the two checkpoints (.pt) A and B written by training/run.py"
        parser.add_argument(
            "checkpoints",
            nargs=1 if self.single else 2 if self.pair else "+",
            type=Path,
            metavar="CHECKPOINT",
            help=f"{what}, or run folders" if self.run_folders else what,
        )
        if self.settings is not None:
            add_config_args(parser, self.settings, title=f"{self.name} settings")
        excluded = [
            f.name for f in dataclasses.fields(DataSettings) if f.name not in self.data_fields
        ]
        add_config_args(parser, DataSettings, exclude=excluded, title="data and evaluation")
        if "samples" in self.data_fields:
            parser.set_defaults(samples=self.samples)
        add_output_args(parser, "<first input's run folder>/analysis")
        return parser

    def _task(self, args: argparse.Namespace) -> Task:
        settings = config_from_args(args, self.settings) if self.settings else None
        data = config_from_args(args, DataSettings)
        if args.dry_run:
            settings = settings.dry_run() if hasattr(settings, "dry_run") else settings
            data = data.dry_run()
        paths = list(args.checkpoints)
        fallback = self.out_folder(paths) if self.out_folder else default_out(paths[0])
        out = prepare_output(args.out or fallback, self.outputs(settings), args.overwrite)
        found = [checkpoints.read(self._checkpoint_of(path)) for path in paths]
        evaluation = Evaluation(
            data.loss,
            data.time_step,
            resolve_dtype(data.dtype),
            resolve_device(data.device),
            data.seed,
            args.quiet,
        )
        return Task(settings, data, paths, found, out, evaluation, args.overwrite)

    def _checkpoint_of(self, path: Path) -> Path:
        if self.run_folders and path.is_dir():
            return RunFiles(path).last
        return path

    def _main(self, argv: list[str] | None = None) -> int:
        args = self.build_parser().parse_args(argv)
        return self.run(self._task(args))

    def main(self, argv: list[str] | None = None) -> int:
        """Run the command; returns the exit status (0, 1 runtime, 2 usage, 130 Ctrl-C)."""
        return command(self._main, f"{self.name}.py")(argv)

    def script(self) -> None:
        """Exit with :meth:`main`'s status (the last line of a command file)."""
        sys.exit(self.main())

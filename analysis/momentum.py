"""Gradient-momentum statistics of SDT and TET (the paper's gradient re-weighting argument).

For each checkpoint: per-time-step error-term norms (SDT's shared S(mean O) - y vs TET's own
S(O(t)) - y), the per-step gradient parts g_t (norms and cosine matrix), total gradient norms per
layer, output spread over time and per-step accuracy, under both losses at the same weights, on
the fixed training subset the trainer logs every epoch. For each run folder: the statistics
logged during training (gradient_stats.csv), or recomputed from its epoch_NNN.pt files with
--recompute. Writes momentum.csv (long format; time steps t are 0-based, as in
gradient_stats.csv and in the plots) and PNG/PDF plots.

There is no --split, --seed or --batch-size: the statistics are always on the trainer's fixed
training subset (seed 0), so that recomputed values compare with the logged ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.momentum import (
    COLUMNS,
    MomentumSettings,
    data_spec,
    run_rows,
    summarize,
)
from analysis.measures.registry import get
from analysis.plots.momentum import save_momentum_figures
from toolkit.errors import ConfigError, ToolkitError
from toolkit.progress import Progress
from toolkit.settings import option
from training.runs import checkpoint as checkpoints
from training.runs.checkpoint import Checkpoint
from training.runs.layout import RunFiles

MOMENTUM = get("gradient_momentum")


@dataclass(frozen=True)
class MomentumCommandSettings(MomentumSettings):
    """The measure's subset, how run folders are read, and whether to draw."""

    recompute: bool = option(False, "run folders: recompute from their epoch_NNN.pt files")
    plots: bool = option(True, "draw the PNG/PDF plots (--no-plots: only the CSV)")

    def dry_run(self) -> MomentumCommandSettings:
        """At most 32 samples."""
        return replace(self, samples=min(self.samples or 32, 32))


def _checkpoint_rows(task: Task, found: Checkpoint) -> list[dict]:
    input = task.input(found, data_spec(found, task.settings))
    return MOMENTUM.compute(input, task.settings, task.evaluation).rows


def _run_folder_rows(task: Task, folder: Path, config, recompute: bool) -> list[dict]:
    run = RunFiles(folder)
    if not recompute:
        return run_rows(run, config)
    paths = [path for _, path in sorted(run.snapshots().items())]
    if not paths:
        raise ToolkitError(f"{folder} has no epoch_NNN.pt files; train with --save-every 1")
    return [row for path in paths for row in _checkpoint_rows(task, checkpoints.read(path))]


def run(task: Task) -> int:
    """Rows of every input; the CSV, a summary on stdout and the plots."""
    recompute, rows, quiet = task.settings.recompute, [], task.evaluation.quiet
    _check_logged(task.paths, recompute)
    with Progress(len(task.paths), "momentum", "input", quiet, 5.0) as bar:
        for path, found in zip(task.paths, task.checkpoints):
            if path.is_dir():
                rows += _run_folder_rows(task, path, found.config, recompute)
            else:
                rows += _checkpoint_rows(task, found)
            bar.update(1)
    target = task.write_csv("momentum.csv", COLUMNS, rows)
    frame = pd.read_csv(target, keep_default_na=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summarize(frame).groupby(["source", "method"]).tail(1).to_string(index=False))
    if task.settings.plots:
        save_momentum_figures(frame, task.out)
    print(f"wrote {target}", file=sys.stderr)
    return 0


def _check_logged(paths: list[Path], recompute: bool) -> None:
    """Run folders without logged statistics need --recompute (before any work)."""
    for path in paths:
        logged = RunFiles(path).gradient_stats
        if path.is_dir() and not recompute and not logged.is_file():
            raise ConfigError(f"{logged} not found; train with --gradient-stats, or --recompute")


COMMAND = CheckpointCommand(
    name="momentum",
    doc=__doc__,
    example=(
        "  python analysis/momentum.py runs/<sdt run> runs/<tet run> --out results/momentum\n"
        "  python analysis/momentum.py runs/<run>/last.pt --samples 256 --device cpu\n"
    ),
    run=run,
    settings=MomentumCommandSettings,
    outputs=lambda settings: ["momentum.csv"],
    data_fields=("device",),
    run_folders=True,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

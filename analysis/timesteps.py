"""Temporal scalability (TET Fig. 4A): evaluate the same weights at several numbers of time steps.

For each checkpoint and each T, the static inputs are repeated T times and the model is
evaluated in eval mode without retraining: accuracy, L_SDT, L_TET (at the checkpoint's lambda and
phi) and the mean firing rate. Writes timesteps.csv (long format: one row per checkpoint and T).

--samples defaults to every sample of the split, in order; --split defaults to train, as in every
analysis command; the paper's Fig. 4A (and the demo) evaluates the test split: pass --split test.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.registry import get
from analysis.measures.timesteps import COLUMNS, TimestepSettings
from toolkit.progress import Progress

TIMESTEPS = get("timesteps")


def run(task: Task) -> int:
    """Every checkpoint at every T; the CSV and a table on stdout."""
    rows = []
    quiet = task.evaluation.quiet
    with Progress(len(task.checkpoints), "timesteps", "checkpoint", quiet, 5.0) as bar:
        for checkpoint in task.checkpoints:
            rows += TIMESTEPS.compute(task.input(checkpoint), task.settings, task.evaluation).rows
            bar.update(1)
    target = task.write_csv("timesteps.csv", COLUMNS, rows)
    print(f"{'method':<7}{'train T':>8}{'T':>4}{'acc':>8}{'L_SDT':>9}{'L_TET':>9}")
    for row in rows:
        print(
            f"{row['method'].upper():<7}{row['train_T']:>8}{row['T']:>4}{row['acc']:>8.4f}"
            f"{row['l_sdt']:>9.4f}{row['l_tet']:>9.4f}"
        )
    print(f"wrote {target}", file=sys.stderr)
    return 0


COMMAND = CheckpointCommand(
    name="timesteps",
    doc=__doc__,
    example="  python analysis/timesteps.py runs/*/last.pt --split test --T 1 2 4 8\n",
    run=run,
    settings=TimestepSettings,
    outputs=lambda settings: ["timesteps.csv"],
    data_fields=("samples", "split", "batch_size", "device", "seed"),
    samples=None,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

"""The surrogate-to-spike gap: checkpoints with hard spikes and with the smooth surrogate step.

For each checkpoint, the accuracy, L_SDT, L_TET and firing rate with the Heaviside step in the
forward pass (as trained) and with the surrogate's smooth step sigma in its place (the integral
of the surrogate derivative the gradients came from; --alpha sets another width), and the gaps,
smooth minus hard. Along a path between two checkpoints the same comparison is in
analysis/connect.py's profile (spikes = hard / smooth); along any slice of analysis/surface.py it
is that command run twice, with --spikes hard and --spikes smooth. Writes spike_gap.csv (one row per
checkpoint), by default into <first checkpoint's run folder>/analysis/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.registry import get
from analysis.measures.spike_gap import COLUMNS, SpikeGapSettings
from toolkit.progress import Progress

SPIKE_GAP = get("spike_gap")


def run(task: Task) -> int:
    """Every checkpoint both ways; the CSV and a table on stdout."""
    rows = []
    with Progress(len(task.checkpoints), "spike gap", "checkpoint", task.evaluation.quiet) as bar:
        for checkpoint in task.checkpoints:
            rows += SPIKE_GAP.compute(task.input(checkpoint), task.settings, task.evaluation).rows
            bar.update(1)
    target = task.write_csv(SPIKE_GAP.artifact, COLUMNS, rows)
    print(f"{'method':<7}{'acc hard':>10}{'acc smooth':>12}{'gap':>9}{'L_SDT gap':>11}  checkpoint")
    for row in rows:
        print(
            f"{row['method'].upper():<7}{row['acc_hard']:>10.4f}{row['acc_smooth']:>12.4f}"
            f"{row['gap_acc']:>9.4f}{row['gap_l_sdt']:>11.4f}  {row['checkpoint']}"
        )
    print(f"wrote {target}", file=sys.stderr)
    return 0


COMMAND = CheckpointCommand(
    name="spike_gap",
    doc=__doc__,
    example="  python analysis/spike_gap.py runs/*/last.pt --split test --samples 2000\n",
    run=run,
    settings=SpikeGapSettings,
    outputs=lambda settings: [SPIKE_GAP.artifact],
    data_fields=("samples", "split", "batch_size", "device", "dtype", "seed"),
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

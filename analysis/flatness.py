"""Flatness of checkpoints: raw, normalized and adaptive measures of L_SDT, L_TET and every L_t.

For each checkpoint and each loss (``sdt``, ``tet``, and with ``--per-step`` every
``L_t = CE(O(t), y)``), every registered loss measure (analysis/measures/): λ_max and Hutch++
trace of the surrogate Hessian, the same in normalized coordinates diag(|w|) H diag(|w|),
epsilon-sharpness, adaptive worst-case and average sharpness; per-time-step losses get λ_max and
trace. Writes flatness.csv (one row per checkpoint x loss x measure, with each estimate's standard
error, convergence flag, cost and time) and flatness.json (the rows, every setting, the data
subsets and provenance), atomically, by default into <first checkpoint's run folder>/analysis/.

The protocol has two seeds, named for what they seed: --data-seed (the sample subset) and
--probe-seed (every probe, start and draw); the study fixed both before its first run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cli.checkpoint_command import CheckpointCommand, Task
from analysis.measures.flatness import HEADER, SUBSETS, FlatnessSettings, checkpoint_rows
from analysis.measures.registry import describe, loss_measures
from toolkit.io import to_plain


def run(task: Task) -> int:
    """Every measure of every loss of every checkpoint; the CSV and the JSON. Each checkpoint's
    rows are kept as they are done, so a killed run, started again, skips the checkpoints it
    measured."""
    settings, rows, records, began = task.settings, [], [], time.perf_counter()
    for index, checkpoint in enumerate(task.checkpoints):
        done = task.partial(index, checkpoint, settings.to_dict())
        if done is not None:
            rows += done["rows"]
            records.append(done["record"])
            if not task.evaluation.quiet:
                print(f"[flatness] {checkpoint.path}: measured before, reused", file=sys.stderr)
            continue
        start = time.perf_counter()
        inputs = {subset: task.input(checkpoint, settings.data_spec(subset)) for subset in SUBSETS}
        input = inputs["main"]
        mine = checkpoint_rows(inputs, settings, task.evaluation)
        seconds = time.perf_counter() - start
        record = to_plain(  # as the JSON holds it
            {
                "checkpoint": str(checkpoint.path),
                "data": input.data,
                "config": checkpoint.config,
                "seconds": seconds,
            }
        )
        task.save_partial(index, checkpoint, settings.to_dict(), {"rows": mine, "record": record})
        rows += mine
        records.append(record)
        if not task.evaluation.quiet:
            print(f"[flatness] {checkpoint.path}: {seconds:.1f} s", file=sys.stderr)
    task.write_csv("flatness.csv", HEADER, rows)
    task.write_json(
        "flatness.json",
        "flatness",
        settings=settings.to_dict(),
        header=HEADER,
        rows=rows,
        checkpoints=records,
        seconds=time.perf_counter() - began,
    )
    task.clear_partials()
    print(f"wrote {task.out / 'flatness.csv'} ({len(rows)} rows)", file=sys.stderr)
    return 0


COMMAND = CheckpointCommand(
    name="flatness",
    doc=f"{__doc__}\nthe registered measures (analysis/measures/):\n{describe(loss_measures())}\n",
    example="  python analysis/flatness.py runs/*/last.pt --out runs/analysis/flatness\n",
    run=run,
    settings=FlatnessSettings,
    outputs=lambda settings: ["flatness.csv", "flatness.json"],
    data_fields=("device",),
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

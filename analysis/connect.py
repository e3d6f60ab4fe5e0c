"""Mode connectivity of two minima: loss barriers on the straight line and on fitted curves.

For checkpoints A and B of one architecture (e.g. an SDT and a TET run): the straight line
(1 - t) A + t B, a quadratic Bezier curve and a polygonal chain with one bend, whose bend is
trained to minimize the loss averaged over t ~ U[0, 1] with the ends fixed (Garipov et al.
2018; the surrogate-gradient model, A's optimizer, learning rate, batch size and epochs unless
given: one fit costs about one training run). With --align (default) everything again with B's
hidden units permuted to A's by weight matching (Ainsworth et al. 2023; the blocks along a skip
path share one permutation).
Along every path, --num-points evaluations of L_SDT, L_TET, accuracy and firing rate on A's fixed
evaluation subset, with BatchNorm statistics interpolated and recomputed at every point, with
hard spikes (as trained) and with the surrogate's smooth step in the forward pass. The barrier of
each profile is Frankle et al.'s (2020): max over t of the value minus the straight line
between its end values.

Writes connect_profile.csv (every evaluated point), connect_barriers.csv (one row per aligned x
path x BN x spikes x metric), connect.json (both tables, the fits' configs, seeds and loss
histories, the alignment, timings, provenance) and connect.png/pdf, by default into
<A's run folder>/analysis/connect-<B's run folder>/. A killed run resumes from connect_parts/
(fits per epoch, profiles per path); --overwrite starts over.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from analysis.cli.checkpoint_command import CheckpointCommand, Task, default_out
from analysis.connectivity.connection import (
    BARRIER_COLUMNS,
    PARTS,
    ConnectSettings,
    check_pair,
    connect,
)
from analysis.connectivity.profile import PROFILE_COLUMNS
from analysis.plots.connectivity import plot_profiles
from analysis.plots.style import save_figure

FILES = ["connect_profile.csv", "connect_barriers.csv", "connect.json"]


def out_folder(paths: list[Path]) -> Path:
    """``<A's run folder>/analysis/connect-<B's run folder name>``."""
    b = paths[1].resolve()
    return default_out(paths[0]) / f"connect-{(b if b.is_dir() else b.parent).name}"


def run(task: Task) -> int:
    """Fit, evaluate, write; a summary of the barriers on stdout."""
    a, b = task.checkpoints
    check_pair(a, b)
    parts = task.out / PARTS
    if task.overwrite:
        shutil.rmtree(parts, ignore_errors=True)
    found = connect(
        task.input(a), b, task.settings, task.evaluation, task.datasets, parts, task.data.spec()
    )
    task.write_csv("connect_profile.csv", PROFILE_COLUMNS, found["profile"])
    task.write_csv("connect_barriers.csv", BARRIER_COLUMNS, found["barriers"])
    task.write_json("connect.json", "connect", **found)
    if task.settings.plots:
        save_figure(plot_profiles(pd.DataFrame(found["profile"])), task.out / "connect")
    shutil.rmtree(parts, ignore_errors=True)
    print("barrier of L_SDT (BN recomputed, hard spikes):")
    for row in found["barriers"]:
        if (row["metric"], row["bn"], row["spikes"]) == ("l_sdt", "recomputed", "hard"):
            aligned = "aligned" if row["aligned"] else "not aligned"
            print(f"  {row['path']:<10} {aligned:<12} {row['barrier']:.4g} at t={row['t_max']:.2f}")
    print(f"wrote {task.out}", file=sys.stderr)
    return 0


COMMAND = CheckpointCommand(
    name="connect",
    doc=__doc__,
    example=(
        "  python analysis/connect.py runs/<sdt>/last.pt runs/<tet>/last.pt\n"
        "  python analysis/connect.py A.pt B.pt --curves bezier --no-align --out results/ab\n"
    ),
    run=run,
    settings=ConnectSettings,
    outputs=lambda settings: FILES,
    data_fields=("samples", "split", "batch_size", "device", "dtype", "seed"),
    pair=True,
    out_folder=out_folder,
)
main = COMMAND.main

if __name__ == "__main__":
    COMMAND.script()

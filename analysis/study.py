"""The evidence study: paired SDT/TET runs on three benchmarks, flatness with its errors, a
population trained to a common criterion, and STUDY.md.

Stages (``--stage``, default all, in this order; each can be run alone and resumes):

- ``paired``: digits and MNIST-1D static, every pair on its own data, trained and measured;
- ``temporal``: MNIST-1D with the sequence encoding, the same;
- ``population``: the MNIST-1D population, trained to the stopping criterion and measured;
- ``subsets``: flatness of a few MNIST-1D checkpoints on disjoint data subsets (after paired);
- ``connectivity``: loss barriers between MNIST-1D minima (SDT-TET and seed-to-seed, straight
  and curved, aligned and not) and the surrogate-to-spike gap (after paired and population);
- ``report``: every CSV, figure and STUDY.md into ``--figures`` from whatever exists.

Jobs are ``training/run.py`` and ``analysis/flatness.py`` subprocesses, one thread each, two at
a time; every job is skipped when its outputs exist, so running the command again resumes. The
design (pairs, endpoints, margins, settings) is ``analysis/evidence/study_design.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.evidence.study_connectivity import connectivity_jobs
from analysis.evidence.study_design import (
    SCALES,
    STAGES,
    flatness_jobs,
    paired_jobs,
    population_flatness_jobs,
    population_jobs,
    subset_jobs,
)
from analysis.evidence.study_report import write_study
from analysis.pipeline.jobs import run_jobs
from toolkit.command import ArgumentParser, check_folders, command
from toolkit.io import atomic_write_text

TIMINGS = "study_timings.json"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="study.py",
        description=__doc__,
        epilog="example:\n  python analysis/study.py --runs runs-study --scale full\n"
        "  python analysis/study.py --runs runs-study --stage population\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs-study"), help="runs folder (default: %(default)s)")
    add(
        "--figures", type=Path, default=Path("figures"), help="output folder (default: %(default)s)"
    )
    add("--scale", choices=sorted(SCALES), default="full", help="how much to run (default: full)")
    add(
        "--stage",
        choices=[*STAGES, "all"],
        default="all",
        help="run one stage only (default: all, in order)",
    )
    add("--data-root", default="data", help="dataset folder for training (default: data)")
    return parser


def _stage_jobs(stage: str, root: Path, scale, data_root: str):
    """The training jobs and the measuring jobs of a stage (the second list is built after the
    first ran, from the checkpoints it made)."""
    if stage == "paired":
        names = [b for b in ("digits", "mnist1d") if b in scale.pairs]
    elif stage == "temporal":
        names = [b for b in ("mnist1d_sequence",) if b in scale.pairs]
    else:
        names = []
    if stage in ("paired", "temporal"):
        training = [j for name in names for j in paired_jobs(root, name, scale, data_root)]
        return training, lambda: [j for name in names for j in flatness_jobs(root, name, scale)]
    if stage == "population":
        return population_jobs(root, scale, data_root), lambda: population_flatness_jobs(
            root, scale
        )
    if stage == "subsets" and scale.subsets:
        return [], lambda: subset_jobs(root, scale)
    if stage == "connectivity":
        return [], lambda: connectivity_jobs(root, scale)
    return [], lambda: []


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_folders({"--runs": args.runs, "--figures": args.figures})
    scale, root, began = SCALES[args.scale], args.runs, time.perf_counter()

    def log(message: str) -> None:
        print(f"[study {time.perf_counter() - began:5.0f} s] {message}", file=sys.stderr)

    timings_path = root / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for stage in STAGES[:-1] if args.stage == "all" else [args.stage]:
        if stage == "report":
            continue
        start = time.perf_counter()
        training, measuring = _stage_jobs(stage, root, scale, args.data_root)
        pending = [job for job in training if not job.done()]
        if not run_jobs(training, scale.jobs, log):
            return 1
        jobs = measuring()
        pending += [job for job in jobs if not job.done()]
        if not run_jobs(jobs, scale.jobs, log):
            return 1
        if pending:  # the stage did work: its time is this run's
            timings[stage] = round(time.perf_counter() - start, 1)
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(timings_path, json.dumps(timings, indent=1) + "\n")
            log(f"stage {stage}: {timings[stage] / 60:.1f} min")
    if args.stage in ("all", "report"):
        start = time.perf_counter()
        names = write_study(root, args.figures, scale, timings)
        log(f"wrote {args.figures / 'STUDY.md'} and {len(names)} figures")
        log(f"stage report: {(time.perf_counter() - start) / 60:.1f} min")
    return 0


main = command(_main, "study.py", interrupted="run the study again: it resumes where it stopped")

if __name__ == "__main__":
    sys.exit(main())

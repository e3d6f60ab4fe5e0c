"""The full evidence on both benchmarks: paired SDT/TET seeds, flatness, population, STUDY.md.

Trains (``training/run.py`` subprocesses, one thread each, two at a time) the paired runs
of digits and MNIST-1D and the MNIST-1D population, measures the flatness of every final
checkpoint (``analysis/flatness.py``), then writes the paired claims tables, the population
Kendall table, three figures (PNG, PDF, CSV) and STUDY.md into ``--figures``. Every job is skipped
when its outputs exist, so running the command again resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.evidence.study_design import (
    SCALES,
    flatness_stage,
    paired_jobs,
    population_jobs,
)
from analysis.evidence.study_report import write_study
from analysis.pipeline.jobs import run_jobs
from toolkit.command import ArgumentParser, check_folders, command


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="study.py",
        description=__doc__,
        epilog="example:\n  python analysis/study.py --runs runs-study --scale full\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs-study"), help="runs folder (default: %(default)s)")
    add(
        "--figures", type=Path, default=Path("figures"), help="output folder (default: %(default)s)"
    )
    add("--scale", choices=sorted(SCALES), default="full", help="how much to run (default: full)")
    add("--data-root", default="data", help="dataset folder for training (default: data)")
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_folders({"--runs": args.runs, "--figures": args.figures})
    scale, root, began = SCALES[args.scale], args.runs, time.perf_counter()

    def log(message: str) -> None:
        print(f"[study {time.perf_counter() - began:5.0f} s] {message}", file=sys.stderr)

    training = [j for b in scale.benchmarks for j in paired_jobs(root, b, scale, args.data_root)]
    training += population_jobs(root, scale, args.data_root)
    if not run_jobs(training, scale.jobs, log) or not run_jobs(
        flatness_stage(root, scale), scale.jobs, log
    ):
        return 1
    names = write_study(root, args.figures, scale)
    log(f"wrote {args.figures / 'STUDY.md'} and {len(names)} figures")
    return 0


main = command(_main, "study.py", interrupted="run the study again: it resumes where it stopped")

if __name__ == "__main__":
    sys.exit(main())

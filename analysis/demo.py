"""The whole chain on the offline default: train -> analyse -> figures -> report.

Trains SDT and TET on the digits default for 3 seeds (plus the short switch, time-step and TIT
runs the figures need), runs the Hessian, surface, sharpness and momentum analyses, runs the
evidence study on MNIST-1D at demo scale (4 paired seeds at 10 epochs instead of the full study's
12/20/12 pairs on three benchmarks, 8 population runs instead of 108: figures/study-demo/STUDY.md),
writes every figure and figures/REPORT.md. Every stage is skipped when its outputs exist, so
running the command again resumes where it stopped (training itself resumes inside a run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.pipeline.demo import (
    DEMO,
    TINY,
    analysis_stages,
    drawing_stages,
    study_stage,
    training_stages,
)
from analysis.pipeline.jobs import run_job
from toolkit.command import ArgumentParser, check_folders, command
from training.runs.layout import RunLayout


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="demo.py",
        description=__doc__,
        epilog="example:\n  python analysis/demo.py --runs runs --figures figures   (make demo)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs"), help="runs folder (default: %(default)s)")
    add(
        "--figures",
        type=Path,
        default=Path("figures"),
        help="figures folder (default: %(default)s)",
    )
    add("--tiny", action="store_true", help="a minimal run (smoke tests)")
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_folders({"--runs": args.runs, "--figures": args.figures})
    layout, scale, began = RunLayout(args.runs), TINY if args.tiny else DEMO, time.perf_counter()
    drawing = drawing_stages(layout, args.figures)
    # the analyses are listed after training, so that they see every trained run
    later = [
        lambda: analysis_stages(layout, scale),
        lambda: [study_stage(layout, args.figures, args.tiny)],
    ]
    total = len(training_stages(layout, scale) + analysis_stages(layout, scale)) + 1 + len(drawing)
    number = 0
    for stages in (lambda: training_stages(layout, scale), *later, lambda: drawing):
        for stage in stages():
            number += 1
            tag = f"[demo {number}/{total}] {stage.name}"
            if stage.outputs and stage.done():
                print(f"{tag}: done, skipped", file=sys.stderr)
                continue
            print(f"{tag} ... ({time.perf_counter() - began:.0f} s so far)", file=sys.stderr)
            if run_job(stage) != 0:
                print(f"[demo] stage failed: {stage.name}", file=sys.stderr)
                return 1
    seconds = time.perf_counter() - began
    print(f"[demo] finished in {seconds:.0f} s; see {args.figures}/REPORT.md", file=sys.stderr)
    return 0


main = command(_main, "demo.py", interrupted="run the demo again: it resumes where it stopped")

if __name__ == "__main__":
    sys.exit(main())

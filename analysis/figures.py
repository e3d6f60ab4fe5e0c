"""Regenerate every figure of the reproduction from saved artifacts only.

Each figure is written as PNG and PDF with a CSV of exactly the plotted data. Nothing expensive is
computed here: a missing artifact is reported with the command that makes it, and the other
figures are still drawn (exit 1 if any was missing). SDT is always blue and TET vermillion
(colour-blind-safe palette).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.evidence.artifacts import MissingArtifact, runs_layout
from analysis.evidence.figures import FIGURES
from analysis.plots.style import save_figure, save_table
from toolkit.command import ArgumentParser, command, prepare_output


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="figures.py",
        description=__doc__,
        epilog="example:\n  python analysis/figures.py --runs runs --only fig2_landscapes\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs"), help="runs folder (default: %(default)s)")
    add("--out", type=Path, default=Path("figures"), help="output folder (default: %(default)s)")
    add("--only", nargs="+", choices=sorted(FIGURES), help="draw only these")
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = runs_layout(args.runs)
    names = args.only or list(FIGURES)
    out = prepare_output(args.out, [], overwrite=True)
    missing = 0
    for name in names:
        try:
            figure, data = FIGURES[name](layout)
        except MissingArtifact as error:
            print(f"{name}: skipped: {error}", file=sys.stderr)
            missing += 1
            continue
        save_figure(figure, out / name)
        save_table(data, out / f"{name}.csv")
        print(f"{name}: wrote {out / name}.png/.pdf/.csv", file=sys.stderr)
    return 1 if missing else 0


main = command(_main, "figures.py")

if __name__ == "__main__":
    sys.exit(main())

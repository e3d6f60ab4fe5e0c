"""Write figures/REPORT.md from saved artifacts: setup, per-method table, and the paper's claims.

Every verdict is computed from the numbers with the rule in analysis/evidence/claims.py
(difference of means beyond two standard errors over seeds); none is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.evidence.artifacts import MissingArtifact, runs_layout
from analysis.evidence.report import render
from toolkit.command import ArgumentParser, command, prepare_output
from toolkit.io import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="report.py",
        description=__doc__,
        epilog="example:\n  python analysis/report.py --runs runs --figures figures\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs"), help="runs folder (default: %(default)s)")
    add(
        "--figures", type=Path, default=Path("figures"), help="report folder (default: %(default)s)"
    )
    return parser


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = runs_layout(args.runs)
    figures = prepare_output(args.figures, ["REPORT.md"], overwrite=True)
    try:
        text = render(layout, figures)
    except MissingArtifact as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    atomic_write_text(figures / "REPORT.md", text)
    print(f"wrote {figures / 'REPORT.md'}", file=sys.stderr)
    return 0


main = command(_main, "report.py")

if __name__ == "__main__":
    sys.exit(main())

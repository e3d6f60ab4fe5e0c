"""Write figures/REPORT.md from saved artifacts: setup, per-method table, and the paper's claims.

Every verdict is computed from the numbers with the rule in analysis/claims.py (difference of
means beyond two standard errors over seeds); none is written by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from analysis import artifacts, verdicts
from analysis.artifacts import MissingArtifact, find_runs, main_runs
from analysis.claims import RULE, Verdict
from analysis.study_design import SCALES
from landscape.io import atomic_write_text
from training.config import ArgumentParser

FIGURES = [
    "fig2_landscapes",
    "fig3_hessian",
    "fig4_flatness_vs_generalization",
    "fig1_interpolation",
    "fig5_switch",
    "fig6_timesteps",
    "fig7_tit",
    "fig8_momentum",
    "fig9_sharpness_dynamics",
]


def _sdt_gradient_stats(root: Path) -> list[pd.DataFrame]:
    sdt = [run for run in main_runs(find_runs(root)) if run.method == "sdt"]
    return artifacts.gradient_stats(sdt, "python training/run.py")


# Claims whose artifacts may be missing: (claim, read and check).
OPTIONAL: tuple[tuple[str, Callable[[Path], Verdict]], ...] = (
    (
        "TET is temporally more scalable",
        lambda root: verdicts.scalability(
            artifacts.timesteps_table(root, "python analysis/timesteps.py")
        ),
    ),
    (
        "TIT reaches the same accuracy at lower cost",
        lambda root: verdicts.tit(artifacts.tit_rows(root)),
    ),
    (
        "SDT's gradient vanishes near its minimum while TET's per-step terms do not",
        lambda root: verdicts.momentum(_sdt_gradient_stats(root)),
    ),
)


def claims(root: Path, table: pd.DataFrame) -> list[Verdict]:
    """Each claim of the paper with its evidence and computed verdict."""
    found = verdicts.per_run_claims(table)
    for claim, check in OPTIONAL:
        try:
            found.append(check(root))
        except MissingArtifact as error:
            found.append(verdicts.missing(claim, error))
    return found


def _fmt(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    return (
        f"{values.mean():.4g} ± {values.std(ddof=1):.2g}"
        if len(values) > 1
        else f"{values.iloc[0]:.4g}"
    )


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def analysis_settings(root: Path) -> list[str]:
    """One line per saved analysis: its samples, probes and tolerances (from its JSON file)."""
    lines, folder = [], root / artifacts.ANALYSIS
    for name in ("hessian_sdt", "hessian_tet", "hessian_epochs"):
        record = _json(folder / name / "hessian.json")
        if record:
            s = record["settings"]
            density = (
                f", SLQ {s['density_steps']} steps x {s['density_repeats']} probes"
                if s["density"]
                else ""
            )
            trace = (
                f"trace {s['trace']} with {s['num_matvecs']} products"
                if s["trace"] not in (None, "none")
                else "no trace"
            )
            lines.append(
                f"- {name}: {s['samples']} {s['split']} samples (seed {s['seed']}), "
                f"{s['dtype']}, top-{s['top_k']} Lanczos to relative residual {s['tol']}, "
                f"{trace}{density}"
            )
    record = _json(folder / "sharpness" / "sharpness.json")
    if record:
        s, d = record["settings"], record["data"]
        lines.append(
            f"- sharpness: {d['samples']} {d['split']} samples (seed {d['seed']}), epsilon "
            f"{s['epsilon']} with {s['ascent_steps']} ascent steps, radii {s['radius']} with "
            f"{s['draws']} random directions each"
        )
    for path in sorted((folder / "surface").glob("*/surface_*.json")):
        record = _json(path)
        if record:
            data, grid = record.get("data", {}), "x".join(map(str, record["grid"]["shape"]))
            lines.append(
                f"- surface {path.parent.name}: {grid} grid, {data.get('num_samples')} "
                f"{data.get('split')} samples, directions {record['directions']['kind']}"
            )
    return lines or ["- no analysis results found"]


def study_links(figures: Path) -> list[str]:
    """Where the decisive evidence is: the paired study reports next to this one, if written."""
    full, demo = SCALES["full"], SCALES["demo"]
    reports = {
        "STUDY.md": f"the full study (`make study`): {full.seeds} paired seeds per benchmark, "
        "the MNIST-1D population",
        "study-demo/STUDY.md": f"the same study at demo scale (`make demo`): {demo.seeds} paired "
        f"seeds on {' and '.join(demo.benchmarks)}, {demo.epochs['mnist1d']} epochs",
    }
    found = [
        f"- [{name}]({name}): {what}" for name, what in reports.items() if (figures / name).exists()
    ]
    if not found:
        return []
    return [
        "## Deciding the claims",
        "",
        "The table above uses 3 seeds on digits and a two-standard-error rule, which cannot "
        "tell 'no difference' from 'too little data'. The paired study (digits and MNIST-1D, "
        "confidence intervals, sign-flip p-values, equivalence margins, flatness in "
        "normalized coordinates) decides:",
        "",
        *found,
    ]


def render(root: Path, figures: Path) -> str:
    """The report text."""
    table, runs = artifacts.run_table(root), main_runs(find_runs(root))
    config = runs[0].config
    columns = [c for c in table.columns if c not in ("run", "method", "seed")]
    lines = [
        "# Reproduction report: TET vs SDT on the offline default",
        "",
        "Generated by `python analysis/report.py` from the artifacts under "
        f"`{root}`; regenerate with `make demo`.",
        "",
        "## Setup",
        "",
        f"- dataset: {config['dataset']} ({config['input_shape']}), model: {config['model']}, "
        f"T = {config['T']}, epochs = {config['epochs']}, optimizer: {config['optimizer']} lr "
        f"{config['lr']}, TET lambda = {config['tet_lambda']}, phi = {config['tet_phi']}",
        f"- seeds: {sorted(table.seed.unique().tolist())}; torch {torch.__version__}, "
        f"python {platform.python_version()}",
        "",
        "## Per method (mean ± std over seeds)",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for method, part in table.groupby("method"):
        lines.append(f"| {method.upper()} | " + " | ".join(_fmt(part[c]) for c in columns) + " |")
    lines += [
        "",
        f"## Claims (rule: {RULE}; {verdicts.TIT_RULE})",
        "",
        "| claim | evidence | TET - SDT (or candidate - baseline) | 2 SE | verdict |",
        "|---|---|---|---|---|",
    ]
    for v in claims(root, table):
        lines.append(
            f"| {v.claim} | {v.evidence} | {v.difference:.4g} | {2 * v.stderr:.2g} | "
            f"**{v.verdict}** |"
        )
    lines += ["", *study_links(figures)]
    lines += ["", "## Analysis settings", "", *analysis_settings(root)]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name}.png)" for name in FIGURES if (figures / f"{name}.png").exists()]
    return "\n".join(lines) + "\n"


def build_parser():
    parser = ArgumentParser(
        description=__doc__,
        epilog="example:\n  python analysis/report.py --runs runs --figures figures\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", default="runs", help="runs folder (default: %(default)s)")
    parser.add_argument("--figures", default="figures", help="report folder (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root, figures = Path(args.runs), Path(args.figures)
    try:
        text = render(root, figures)
    except MissingArtifact as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    figures.mkdir(parents=True, exist_ok=True)
    atomic_write_text(figures / "REPORT.md", text)
    print(f"wrote {figures / 'REPORT.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

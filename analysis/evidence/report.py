"""REPORT.md: the setup, a table per method and the paper's claims, from saved artifacts only.

Every verdict is computed from the numbers with the rule in :mod:`analysis.evidence.claims`
(difference of means beyond two standard errors over seeds); none is written by hand.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from analysis.evidence import artifacts, verdicts
from analysis.evidence.artifacts import MissingArtifact, find_runs, main_runs
from analysis.evidence.claims import RULE, Verdict
from analysis.evidence.figures import REPORT_ORDER
from analysis.evidence.study_design import SCALES
from training.runs.layout import RunLayout

__all__ = ["OPTIONAL", "analysis_settings", "claims", "render", "study_links"]


def _sdt_gradient_stats(layout: RunLayout) -> list[pd.DataFrame]:
    sdt = [run for run in main_runs(find_runs(layout)) if run.method == "sdt"]
    return artifacts.gradient_stats(sdt, "python training/run.py")


# Claims whose artifacts may be missing: (claim, read and check).
OPTIONAL: tuple[tuple[str, Callable[[RunLayout], Verdict]], ...] = (
    (
        "TET is temporally more scalable",
        lambda layout: verdicts.scalability(
            artifacts.timesteps_table(layout, "python analysis/timesteps.py")
        ),
    ),
    (
        "TIT reaches the same accuracy at lower cost",
        lambda layout: verdicts.tit(artifacts.tit_rows(layout)),
    ),
    (
        "SDT's gradient vanishes near its minimum while TET's per-step terms do not",
        lambda layout: verdicts.momentum(_sdt_gradient_stats(layout)),
    ),
)


def claims(layout: RunLayout, table: pd.DataFrame) -> list[Verdict]:
    """Each claim of the paper with its evidence and computed verdict."""
    found = verdicts.per_run_claims(table)
    for claim, check in OPTIONAL:
        try:
            found.append(check(layout))
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


def analysis_settings(layout: RunLayout) -> list[str]:
    """One line per saved analysis: its samples, probes and tolerances (from its JSON file)."""
    lines = []
    folders = [layout.hessian("sdt"), layout.hessian("tet"), layout.hessian_epochs]
    for folder in folders:
        name, record = folder.name, _json(folder / "hessian.json")
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
    record = _json(layout.sharpness / "sharpness.json")
    if record:
        s, d = record["settings"], record["data"]
        lines.append(
            f"- sharpness: {d['samples']} {d['split']} samples (seed {d['seed']}), epsilon "
            f"{s['epsilon']} with {s['epsilon_steps']} ascent steps, radii {s['radius']} with "
            f"{s['draws']} random directions each"
        )
    for path in sorted(layout.surfaces.glob("*/surface_*.json")):
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
    full_pairs = ", ".join(f"{b} {n}" for b, n in full.pairs.items())
    demo_pairs = ", ".join(f"{b} {n}" for b, n in demo.pairs.items())
    reports = {
        "STUDY.md": f"the full study (`make study`): paired seeds {full_pairs}, each pair on its "
        "own data, and the MNIST-1D population",
        "study-demo/STUDY.md": f"the same study at demo scale (`make demo`): paired seeds "
        f"{demo_pairs}, {demo.epochs['mnist1d']} epochs",
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
        "tell 'no difference' from 'too little data'. The paired study (digits, MNIST-1D static "
        "and sequence; confidence intervals, sign-flip p-values adjusted for multiplicity, "
        "equivalence margins, flatness with its errors) decides:",
        "",
        *found,
    ]


def render(layout: RunLayout, figures: Path) -> str:
    """The report text."""
    table, runs = artifacts.run_table(layout), main_runs(find_runs(layout))
    config, shape = runs[0].config, list(runs[0].input_shape)
    columns = [c for c in table.columns if c not in ("run", "method", "seed")]
    lines = [
        "# Reproduction report: TET vs SDT on the offline default",
        "",
        "Generated by `python analysis/report.py` from the artifacts under "
        f"`{layout.root}`; regenerate with `make demo`.",
        "",
        "## Setup",
        "",
        f"- dataset: {config.dataset} ({shape}), model: {config.model}, "
        f"T = {config.T}, epochs = {config.epochs}, optimizer: {config.optimizer} lr "
        f"{config.lr}, TET lambda = {config.tet_lambda}, phi = {config.tet_phi}",
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
    for v in claims(layout, table):
        lines.append(
            f"| {v.claim} | {v.evidence} | {v.difference:.4g} | {2 * v.stderr:.2g} | "
            f"**{v.verdict}** |"
        )
    lines += ["", *study_links(figures)]
    lines += ["", "## Analysis settings", "", *analysis_settings(layout)]
    lines += ["", "## Figures", ""]
    lines += [f"![{n}]({n}.png)" for n in REPORT_ORDER if (figures / f"{n}.png").exists()]
    return "\n".join(lines) + "\n"

"""STUDY.md and its figures and tables, from the study's saved artifacts.

:func:`write_study` reads the runs and flatness tables (:mod:`analysis.evidence.study_tables`),
draws the figures (:mod:`analysis.plots.study`) and writes STUDY.md; :func:`render` turns the
per-benchmark paired tables, the population table and the settings into Markdown, where every
sentence is a template filled by numbers; :func:`summary` writes the short summary from counts
of verdicts and the sign and size of Kendall's tau, never from hand-written conclusions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from analysis.evidence import study_tables
from analysis.evidence.claims import PAIRED_RULE
from analysis.evidence.study_design import (
    BENCHMARKS,
    MARGINS,
    SCALES,
    StudyScale,
    population_cells,
)
from analysis.plots import study as plots_study
from analysis.plots.style import save_figure, save_table
from toolkit.io import atomic_write_text

__all__ = [
    "write_study",
    "render",
    "summary",
    "paired_markdown",
    "population_markdown",
    "MNIST1D_REFERENCES",
    "settings_lines",
    "reference_lines",
    "scale_banner",
]


def _number(value) -> str:
    return "n/a" if value != value else f"{value:.4g}"


def paired_markdown(table: pd.DataFrame) -> list[str]:
    """The paired claims table: mean difference, 95 % CI, p, δ and verdict per metric."""
    if table.empty:
        return ["(no paired runs at this scale)"]
    lines = [
        "| metric | claim | n | SDT mean | TET mean | TET - SDT | 95 % CI | p | δ | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.metric} | {r.claim} | {r.n} | {_number(r.sdt_mean)} | "
            f"{_number(r.tet_mean)} | {_number(r.mean_difference)} | "
            f"[{_number(r.ci_low)}, {_number(r.ci_high)}] | {_number(r.p_value)} | "
            f"{_number(r.delta)} ({r.delta_rule}) | **{r.verdict}** |"
        )
    return lines


def population_markdown(table: pd.DataFrame) -> list[str]:
    """Kendall's tau, granulated psi and tau per axis for every measure."""
    if table.empty:
        return ["(no population at this scale)"]
    axes = [c for c in table.columns if c.startswith("tau_")]
    lines = [
        "| measure | tau | p (tau = 0) | psi | " + " | ".join(axes) + " |",
        "|---" * (4 + len(axes)) + "|",
    ]
    for _, r in table.iterrows():
        cells = [_number(r[c]) for c in ("tau", "p_value", "psi", *axes)]
        lines.append(f"| {r.measure} | " + " | ".join(cells) + " |")
    return lines


def summary(paired: dict[str, pd.DataFrame], population: pd.DataFrame) -> list[str]:
    """Counts of verdicts per benchmark and the strongest population correlations (templates)."""
    lines = []
    for benchmark, table in paired.items():
        if table.empty:
            continue
        counts = table.verdict.value_counts().to_dict()
        flat = table[table.metric.str.contains("/l_")]
        held = sorted(flat[flat.verdict == "holds"].metric)
        opposite = sorted(flat[flat.verdict == "opposite"].metric)
        lines.append(
            f"- {benchmark}: {len(table)} paired metrics; verdicts "
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            + f". Flatness measures where 'TET lower' holds: {held or 'none'}; where the "
            f"opposite holds (TET sharper): {opposite or 'none'}."
        )
        for metric in ("test_acc", "acc_gap"):
            row = table[table.metric == metric]
            if not row.empty:
                r = row.iloc[0]
                lines.append(
                    f"  - {metric}: TET - SDT = {_number(r.mean_difference)} "
                    f"(95 % CI [{_number(r.ci_low)}, {_number(r.ci_high)}]), "
                    f"verdict {r.verdict}."
                )
    if not population.empty:
        ranked = population.dropna(subset=["tau"]).sort_values("tau", key=abs, ascending=False)
        for _, r in ranked.head(3).iterrows():
            lines.append(
                f"- population: {r.measure} has tau {_number(r.tau)} (p "
                f"{_number(r.p_value)}) and psi {_number(r.psi)} with the {r.gap} over "
                f"{r.num_runs} runs."
            )
        positive = int((population.tau > 0).sum())
        lines.append(
            f"- population: {positive} of {len(population)} measures have tau > 0 "
            "(flatter minimum, smaller gap)."
        )
    return lines or ["- no results yet"]


MNIST1D_REFERENCES = {"logistic regression": 32, "MLP": 68, "CNN": 94, "GRU": 91, "human": 96}
"""Published test accuracies (%) on MNIST-1D's default split (Greydanus & Kobak, ICML 2024)."""

PROTOCOL = (
    "Settings were fixed before any verdict was looked at: the MNIST-1D training setting by the "
    "protocol in `configs/README.md` (committed before its selection runs, which never compared "
    "SDT with TET), the digits setting is the training default, and the study design and every "
    "margin δ are code in `analysis/evidence/study_design.py`, committed before the full study "
    "first ran."
)


def scale_banner(settings: dict) -> list[str]:
    """One paragraph saying how much this run is; a reduced run says that it is reduced."""
    benchmarks = " and ".join(settings.get("benchmarks", BENCHMARKS))
    text = (
        f"Scale `{settings['scale']}`: {settings['seeds']} paired seeds per method on "
        f"{benchmarks}, {settings['population_runs']} population runs on "
        "MNIST-1D."
    )
    if settings["scale"] != "full":
        full = SCALES["full"]
        text += (
            " This is a reduced run with fewer seeds and epochs than the full study "
            f"({full.seeds} seeds on {' and '.join(full.benchmarks)} at the committed "
            f"settings, {len(population_cells(full))} population runs: `make study`), so its "
            "verdicts are weaker and, below 6 seeds, never more than 'inconclusive' or "
            "'equivalent'; `figures/STUDY.md` holds the full study."
        )
    return [text]


def reference_lines(paired: dict) -> list[str]:
    """Where the SNNs land on MNIST-1D next to the published ANN reference points."""
    table = paired.get("mnist1d")
    if table is None or table.empty or "test_acc" not in set(table.metric):
        return []
    row = table[table.metric == "test_acc"].iloc[0]
    references = ", ".join(f"{name} {value} %" for name, value in MNIST1D_REFERENCES.items())
    return [
        f"MNIST-1D test accuracy, mean over {row.n} seeds: SDT {100 * row.sdt_mean:.1f} %, "
        f"TET {100 * row.tet_mean:.1f} %. Published references on the same default split "
        f"(Greydanus & Kobak 2024): {references}.",
        "",
    ]


def settings_lines(settings: dict, configs: dict, flatness: dict) -> list[str]:
    """Every setting: the study scale, each benchmark's training config, the flatness settings."""
    lines = ["## Settings", "", PROTOCOL, "", "Study:", "", "```"]
    lines += [f"{key}: {value}" for key, value in settings.items()]
    for benchmark, config in configs.items():
        lines += ["```", "", f"Training, {benchmark} (every run; seed and method vary):", "", "```"]
        lines += [f"{key}: {value}" for key, value in config.items()]
    if flatness:
        lines += ["```", "", "Flatness (`analysis/flatness.py`, every checkpoint):", "", "```"]
        lines += [f"{key}: {value}" for key, value in flatness.items()]
    return lines + ["```"]


def render(
    paired: dict,
    population: pd.DataFrame,
    settings: dict,
    figures: list[str],
    configs: dict | None = None,
    flatness: dict | None = None,
) -> str:
    """The whole STUDY.md."""
    lines = [
        "# Evidence study: does TET find flatter minima, and does flatness predict generalization?",
        "",
        "Generated by `python analysis/study.py` from the saved runs and flatness tables; "
        "every number and verdict below is computed, none is written by hand.",
        "",
        *scale_banner(settings),
        "",
        "## Summary (filled from the numbers)",
        "",
        *summary(paired, population),
        "",
        *reference_lines(paired),
        f"## Paired rule\n\n{PAIRED_RULE}.",
        "",
        "Margins δ (fixed before any result):",
        "",
    ]
    for name, margin in MARGINS.items():
        kind = "x |mean of SDT over seeds|" if margin.relative else "absolute"
        lines.append(f"- {name}: {margin.value:g} ({kind}): {margin.reason}")
    for benchmark, table in paired.items():
        lines += ["", f"## Paired claims: {benchmark}", "", *paired_markdown(table)]
    lines += [
        "",
        "## Population on MNIST-1D: Kendall tau with the generalization gap",
        "",
        *population_markdown(population),
        "",
    ]
    lines += settings_lines(settings, configs or {}, flatness or {})
    lines += ["", "## Figures", "", *[f"![{name}]({name}.png)" for name in figures]]
    return "\n".join(lines) + "\n"


def _save(figure_and_data, figures: Path, name: str) -> str:
    figure, data = figure_and_data
    save_figure(figure, figures / name)
    save_table(data, figures / f"{name}.csv", na_rep="nan")
    return name


def _tables(root: Path, benchmarks: tuple[str, ...]):
    paired, frames = {}, {}
    for benchmark in benchmarks:
        frame = study_tables.wide_frame(
            study_tables.run_frame(root / benchmark),
            study_tables.flatness_frame(root / "flatness" / benchmark),
        )
        frames[benchmark] = frame
        table = study_tables.paired_table(frame) if not frame.empty else pd.DataFrame()
        paired[benchmark] = table.assign(benchmark=benchmark) if not table.empty else table
    population = study_tables.wide_frame(
        study_tables.run_frame(root / "population"),
        study_tables.flatness_frame(root / "flatness" / "population"),
    )
    return paired, frames, population


_PER_RUN = ("seed", "method", "data_root", "device", "init_from", "switch_to_tet_at")


def _training_settings(folder: Path) -> dict:
    """The config every paired run of a benchmark shares (fields that vary per run dropped)."""
    found = sorted(folder.glob("*/config.json"))
    if not found:
        return {}
    config = json.loads(found[0].read_text())
    return {k: v for k, v in config.items() if k not in _PER_RUN}


def _flatness_settings(folder: Path) -> dict:
    """The settings ``analysis/flatness.py`` recorded (the same for every part)."""
    found = sorted(folder.glob("*/part*/flatness.json"))
    return json.loads(found[0].read_text())["settings"] if found else {}


def write_study(root: Path, figures: Path, scale: StudyScale) -> list[str]:
    """Tables, figures and STUDY.md from the saved artifacts; returns the figure names."""
    paired, frames, population = _tables(root, scale.benchmarks)
    taus = study_tables.population_table(population)
    figures.mkdir(parents=True, exist_ok=True)
    names = []
    if not taus.empty:
        names.append(_save(plots_study.tau_figure(taus), figures, "study_tau"))
    steps = study_tables.per_step_frame(study_tables.flatness_frame(root / "flatness" / "mnist1d"))
    if not steps.empty and steps.t.notna().any():
        names.append(_save(plots_study.per_step_figure(steps), figures, "study_per_step"))
    tables = [t for t in paired.values() if not t.empty]
    if tables:
        table = pd.concat(tables, ignore_index=True)
        differences = pd.concat(
            [
                study_tables.paired_differences(frames[b], t).assign(benchmark=b)
                for b, t in paired.items()
                if not t.empty
            ]
        )
        names.append(_save(plots_study.paired_figure(differences, table), figures, "study_paired"))
        save_table(table, figures / "study_paired.csv", na_rep="nan")
    if not taus.empty:
        save_table(taus, figures / "study_population.csv", na_rep="nan")
    settings = {
        "scale": scale.name,
        **{k: v for k, v in dataclasses.asdict(scale).items()},
        "population_runs": len(population),
        "paired_gap_definition": study_tables.__doc__.split("Generalization gap: ")[-1]
        .strip()
        .replace("\n", " "),
    }
    configs = {b: _training_settings(root / b) for b in scale.benchmarks}
    text = render(paired, taus, settings, names, configs, _flatness_settings(root / "flatness"))
    atomic_write_text(figures / "STUDY.md", text)
    return names

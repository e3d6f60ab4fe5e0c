"""STUDY.md, its figures and its CSVs, from the study's saved artifacts.

:func:`write_study` collects the runs (:func:`analysis.evidence.study_tables.collect_runs`),
writes them to ``study_runs.csv`` and every table computed from them
(:func:`~analysis.evidence.study_tables.build_tables`), draws the figures
(:mod:`analysis.plots.study`), records the settings in ``study_settings.json`` and writes
STUDY.md with :func:`render`, a function of those files alone: every sentence is a template filled
by numbers, so a test recomputes STUDY.md from the committed CSVs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from analysis.evidence import study_tables
from analysis.evidence.claims import PAIRED_RULE
from analysis.evidence.study_connectivity import connectivity_markdown
from analysis.evidence.study_design import (
    BENCHMARKS,
    DESIGN_COMMITTED,
    DESIGN_VERSION,
    MARGINS,
    MULTIPLICITY_METHOD,
    NOISE_SHARE,
    PRIMARY_BENCHMARK,
    PRIMARY_ENDPOINTS,
    SCALES,
    StudyScale,
    population_cells,
)
from analysis.pipeline.jobs import REPO
from analysis.plots import study as plots_study
from analysis.plots.style import save_figure, save_table
from toolkit.io import atomic_write_text

__all__ = [
    "FILES",
    "ONE_DRAW",
    "write_study",
    "read_tables",
    "read_one_draw",
    "render",
    "summary",
    "MNIST1D_REFERENCES",
]

FILES = {
    "runs": "study_runs.csv",
    "differences": "study_differences.csv",
    "paired": "study_paired.csv",
    "population": "study_population.csv",
    "subset_runs": "study_subset_runs.csv",
    "subsets": "study_subsets.csv",
    "settings": "study_settings.json",
}
ONE_DRAW = REPO / "figures" / "study_one_draw.csv"
"""Issue 12's paired table (one MNIST-1D draw, one test set, 10 seeds; digits one split), frozen
as the comparison row of every study report."""

MNIST1D_REFERENCES = {"logistic regression": 32, "MLP": 68, "CNN": 94, "GRU": 91, "human": 96}
"""Published test accuracies (%) on MNIST-1D's default split (Greydanus & Kobak, ICML 2024)."""


def _number(value) -> str:
    return "n/a" if value != value or value is None else f"{value:.4g}"


def _p(value) -> str:
    return "n/a" if value != value else f"{value:.3g}"


def _points(value) -> str:
    return "n/a" if value != value else f"{100 * value:+.2f}"


# --- tables ---


def paired_markdown(table: pd.DataFrame, family: str) -> list[str]:
    """One family's rows: means, difference, 95 % CI, raw and adjusted p, δ, noise, verdict."""
    rows = table[table.family == family]
    if rows.empty:
        return ["(none)"]
    lines = [
        "| metric | claim | n | SDT mean | TET mean | TET - SDT | 95 % CI | p | adjusted p | δ "
        "| noise share | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in rows.iterrows():
        flag = " ⚑" if r.noise_flag else ""
        unconverged = f" ({r.unconverged} unconverged)" if r.unconverged else ""
        lines.append(
            f"| {r.metric} | {r.claim} | {r.n} | {_number(r.sdt_mean)} | "
            f"{_number(r.tet_mean)} | {_number(r.mean_difference)} | "
            f"[{_number(r.ci_low)}, {_number(r.ci_high)}] | {_p(r.p_value)} | "
            f"{_p(r.p_adjusted)} | {_number(r.delta)} | {_number(r.noise_share)}{flag} | "
            f"**{r.verdict}**{unconverged} |"
        )
    return lines


def one_draw_markdown(table: pd.DataFrame, one_draw: pd.DataFrame) -> list[str]:
    """This study's primary endpoints next to issue 12's one-draw, one-test-set result."""
    lines = [
        "| benchmark | metric | this study: TET - SDT [95 % CI], verdict | one draw, one test set "
        "(issue 12): TET - SDT [95 % CI], verdict |",
        "|---|---|---|---|",
    ]
    for _, r in table[table.family == "primary"].iterrows():
        old = one_draw[(one_draw.benchmark == r.benchmark) & (one_draw.metric == r.metric)]
        then = "not measured"
        if not old.empty:
            o = old.iloc[0]
            then = (
                f"{_number(o.mean_difference)} [{_number(o.ci_low)}, {_number(o.ci_high)}], "
                f"{o.verdict} (n {o.n})"
            )
        lines.append(
            f"| {r.benchmark} | {r.metric} | {_number(r.mean_difference)} "
            f"[{_number(r.ci_low)}, {_number(r.ci_high)}], {r.verdict} (n {r.n}) | {then} |"
        )
    return lines


def population_markdown(table: pd.DataFrame) -> list[str]:
    """Kendall's tau, psi and tau per axis, with permutation p-values and group counts."""
    if table.empty:
        return ["(no population at this scale)"]
    axes = [c[4:] for c in table.columns if c.startswith("tau_")]
    header = "| metric | runs | tau | p (perm.) | psi | p (perm.) | "
    header += " | ".join(f"tau {a} (groups)" for a in axes) + " |"
    lines = [header, "|---" * (6 + len(axes)) + "|"]
    for _, r in table.iterrows():
        cells = [f"{_number(r[f'tau_{a}'])} ({r[f'groups_{a}']})" for a in axes]
        lines.append(
            f"| {r.metric} | {r.num_runs} | {_number(r.tau)} | {_p(r.p_tau)} | {_number(r.psi)} "
            f"| {_p(r.p_psi)} | " + " | ".join(cells) + " |"
        )
    return lines


def subset_markdown(table: pd.DataFrame) -> list[str]:
    """Subset-to-subset against seed-to-seed spread."""
    if table.empty:
        return ["(no subset check at this scale)"]
    lines = [
        "| metric | checkpoints | subsets | SD over subsets | SD over seeds | SD of paired "
        "differences | subsets / seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.metric} | {r.checkpoints} | {r.subsets} | {_number(r.subset_sd)} | "
            f"{_number(r.seed_sd)} | {_number(r.difference_sd)} | {_number(r.subset_over_seed)} |"
        )
    return lines


# --- summary ---


def _claim_line(r, one_draw: pd.DataFrame, table: pd.DataFrame) -> str:
    """One claim: verdict, the deciding p, the effect with its interval, the one-draw verdict."""
    deciding = r.p_adjusted if r.family == "secondary" else r.p_value
    kind = "adjusted p" if r.family == "secondary" else "p"
    effect = (
        f"{_points(r.mean_difference)} points [{_points(r.ci_low)}, {_points(r.ci_high)}]"
        if r.metric in ("test_acc", "acc_gap")
        else f"{_number(r.mean_difference)} [{_number(r.ci_low)}, {_number(r.ci_high)}]"
    )
    old = one_draw[(one_draw.benchmark == r.benchmark) & (one_draw.metric == r.metric)]
    then = f"; one draw, one test set: {old.iloc[0].verdict}" if not old.empty else ""
    line = f"  - {r.metric} ({r.claim}): **{r.verdict}**, {kind} {_p(deciding)}, "
    line += f"TET - SDT {effect}{then}"
    if r.metric == "acc_gap" and r.mean_difference < 0:
        train = table[table.metric == "train_acc"]
        if not train.empty and train.iloc[0].mean_difference < 0:
            t = train.iloc[0]
            line += (
                f". Caveat: TET's train accuracy is lower by {100 * -t.mean_difference:.2f} "
                f"points [{100 * -t.ci_high:.2f}, {100 * -t.ci_low:.2f}], so part of the "
                f"smaller gap (a share of {t.mean_difference / r.mean_difference:.0%} at the "
                "means) is weaker fitting, not better testing"
            )
    return line + "."


def _survivors(table: pd.DataFrame) -> list[str]:
    """Which resolved ascent verdicts keep their verdict with the first-order term removed."""
    lines = []
    for _, r in table[table.metric.str.contains("-linear/")].iterrows():
        base = table[table.metric == r.metric.replace("-linear/", "/")]
        if base.empty or base.iloc[0].verdict not in ("holds", "opposite"):
            continue
        kept = "survives" if r.verdict == base.iloc[0].verdict else f"becomes {r.verdict}"
        lines.append(f"{base.iloc[0].metric} ({base.iloc[0].verdict}) {kept}")
    return lines


def _radius_ordering(table: pd.DataFrame) -> list[str]:
    """Per loss: the sign of TET - SDT of the adaptive worst case at every radius."""
    lines = []
    for loss in ("l_sdt", "l_tet"):
        rows = table[table.metric.str.match(rf"^adaptive_worst(@[0-9.]+)?/{loss}$")]
        if len(rows) < 2:
            continue
        signs = {
            r.metric: ("TET lower" if r.mean_difference < 0 else "TET higher")
            for _, r in rows.iterrows()
        }
        same = "the same at every radius" if len(set(signs.values())) == 1 else "NOT the same"
        detail = ", ".join(f"{m.split('/')[0]}: {s}" for m, s in signs.items())
        lines.append(f"{loss}: ordering {same} ({detail})")
    return lines


def summary(tables: study_tables.StudyTables, one_draw: pd.DataFrame, settings: dict) -> list[str]:
    """Per benchmark and claim what a reader needs, then the population, all from the tables."""
    paired, lines = tables.paired, []
    for benchmark in settings.get("benchmarks", []):
        table = paired[paired.benchmark == benchmark] if not paired.empty else paired
        if table.empty:
            continue
        n = int(table.n.max())
        lines.append(f"- **{benchmark}** ({n} pairs; primary endpoints at 5 % each):")
        accuracy = table[table.metric == "test_acc"]
        if not accuracy.empty and (accuracy.iloc[0].sdt_mean + accuracy.iloc[0].tet_mean) < 1.6:
            a = accuracy.iloc[0]
            lines.append(
                f"  - The network fits this benchmark poorly (test accuracy SDT "
                f"{100 * a.sdt_mean:.1f} %, TET {100 * a.tet_mean:.1f} %, under 80 %); "
                "`configs/README.md` says what its selection found and what would be needed."
            )
        for _, r in table[table.family == "primary"].iterrows():
            lines.append(_claim_line(r, one_draw, table))
        secondary = table[table.family == "secondary"]
        counts = secondary.verdict.value_counts().to_dict()
        held = sorted(secondary[secondary.verdict == "holds"].metric)
        opposite = sorted(secondary[secondary.verdict == "opposite"].metric)
        lines.append(
            f"  - {len(secondary)} secondary metrics (Westfall-Young adjusted): "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f". TET lower: {', '.join(held) or 'none'}; TET higher (opposite): "
            f"{', '.join(opposite) or 'none'}."
        )
        survivors = _survivors(table)
        if survivors:
            lines.append("  - Linear term removed: " + "; ".join(survivors) + ".")
        ordering = _radius_ordering(table)
        if ordering:
            lines.append("  - Adaptive worst case over radii: " + "; ".join(ordering) + ".")
        flagged = sorted(table[table.noise_flag].metric)
        lines.append(
            f"  - Estimator noise above {NOISE_SHARE:g} of the paired spread: "
            f"{', '.join(flagged) or 'none'}."
        )
    population = tables.population
    if not population.empty:
        counts = settings.get("population_counts", {})
        lines.append(
            f"- **population**: {counts.get('met', 'n/a')} of {counts.get('runs', 'n/a')} runs "
            f"met the stopping criterion; tau > 0 (flatter minimum, smaller gap) for "
            f"{int((population.tau > 0).sum())} of {len(population)} metrics; "
            f"{int((population.p_tau < 0.05).sum())} with permutation p < 0.05 (read p as a scale: "
            "the runs share seeds, draws and a grid)."
        )
        ranked = population.dropna(subset=["tau"]).sort_values("tau", key=abs, ascending=False)
        for _, r in ranked.head(3).iterrows():
            lines.append(
                f"  - {r.metric}: tau {_number(r.tau)} (permutation p {_p(r.p_tau)}), psi "
                f"{_number(r.psi)} (p {_p(r.p_psi)}) over {r.num_runs} runs."
            )
    subsets = tables.subsets
    if not subsets.empty:
        ratio = subsets.subset_over_seed
        lines.append(
            f"- **subsets**: on {int(subsets.checkpoints.max())} MNIST-1D checkpoints, the spread "
            f"over {int(subsets.subsets.min())} disjoint training subsets is "
            f"{_number(ratio.min())}-{_number(ratio.max())} times the spread over seeds "
            f"(median {_number(ratio.median())})."
        )
    return lines or ["- no results yet"]


# --- the document ---


def scale_banner(settings: dict) -> list[str]:
    """One paragraph saying how much this run is; a reduced run says that it is reduced."""
    pairs = ", ".join(f"{b} {n}" for b, n in settings["pairs"].items())
    text = (
        f"Scale `{settings['scale']}`: paired seeds per benchmark {pairs}; "
        f"{settings.get('population_counts', {}).get('runs', 0)} population runs on MNIST-1D."
    )
    if settings["scale"] not in ("full", "paper"):  # paper: the paper benchmarks at full size
        full = SCALES["full"]
        text += (
            " This is a reduced run (fewer pairs and epochs, cheaper flatness settings) than the "
            f"full study ({', '.join(f'{b} {n}' for b, n in full.pairs.items())} pairs, "
            f"{len(population_cells(full.population))} population runs: `make study`), so its "
            "verdicts are weaker; `figures/STUDY.md` holds the full study."
        )
    return [text]


def design_lines(settings: dict) -> list[str]:
    """What was fixed in advance, and when."""
    endpoints = ", ".join(f"`{e}`" for e in PRIMARY_ENDPOINTS)
    return [
        "## Design (fixed before the first full run)",
        "",
        f"Design version {DESIGN_VERSION}, committed on {DESIGN_COMMITTED} in "
        "`analysis/evidence/study_design.py` (benchmarks, pairs, data per pair, primary endpoints, "
        "multiplicity method, noise rule, population grid, flatness settings) and "
        "`configs/README.md` (the temporal benchmark's settings and the population's stopping "
        "criterion, each by a protocol committed before its selection or pilot runs), before the "
        "first full run of this version; the git history shows the order. Margins δ are issue "
        "12's, unchanged.",
        "",
        "- Data: every pair trains on its own data (digits: its own stratified split; MNIST-1D: "
        "its own generated draw) and MNIST-1D runs are scored on one common test set of "
        f"{settings.get('test_samples', 'n/a')} samples generated with a seed used for nothing "
        "else, so intervals and p-values cover seeds and data.",
        f"- Primary endpoints per benchmark: {endpoints}, each decided at 5 % by its own "
        "sign-flip p-value (each is its own claim of the paper; the docstring of "
        "`study_design.py` says why this flatness measure).",
        "- Every other metric with a claim is secondary: Westfall-Young "
        f"`{MULTIPLICITY_METHOD}` adjusted p-values over the benchmark's secondary family under "
        "the joint sign-flip distribution (one sign per pair, shared by all metrics); verdicts use "
        "the adjusted p, equivalence a Bonferroni TOST interval.",
        f"- Noise share: RMS measurement error of a paired difference (estimator standard error, "
        f"or the test set's binomial error) over the SD of the paired differences; ⚑ above "
        f"{NOISE_SHARE:g}. n/a: the estimator reports no standard error (Lanczos reports "
        "convergence; an ascent is a lower bound).",
        "- `<measure>-linear` = value minus its first-order part (the increase a linear loss "
        "would give): at a point that is not a minimum of the loss (SDT's checkpoint under L_TET, "
        "TET's under L_SDT) a worst-case sharpness contains it.",
    ]


def stage_lines(settings: dict) -> list[str]:
    """Measured wall time of each stage."""
    seconds = settings.get("stage_seconds", {})
    if not seconds:
        return []
    lines = ["## Time per stage (2 cores, measured)", "", "| stage | wall time |", "|---|---|"]
    lines += [f"| {stage} | {value / 60:.1f} min |" for stage, value in seconds.items()]
    return lines + [f"| total | {sum(seconds.values()) / 60:.1f} min |", ""]


def settings_lines(settings: dict) -> list[str]:
    """Every setting recorded in ``study_settings.json``."""
    lines = ["## Settings", "", "```"]
    for key, value in settings.items():
        if key in ("configs", "flatness", "population_flatness"):
            continue
        lines.append(f"{key}: {value}")
    for benchmark, config in settings.get("configs", {}).items():
        lines += ["```", "", f"Training, {benchmark} (every run; seed and data vary):", "", "```"]
        lines += [f"{key}: {value}" for key, value in config.items()]
    for name in ("flatness", "population_flatness"):
        if settings.get(name):
            lines += ["```", "", f"{name} (`analysis/flatness.py`):", "", "```"]
            lines += [f"{key}: {value}" for key, value in settings[name].items()]
    return lines + ["```"]


def reference_lines(paired: pd.DataFrame) -> list[str]:
    """Where the SNNs land on MNIST-1D next to the published ANN reference points."""
    if paired.empty:
        return []
    row = paired[(paired.benchmark == PRIMARY_BENCHMARK) & (paired.metric == "test_acc")]
    if row.empty:
        return []
    r = row.iloc[0]
    references = ", ".join(f"{name} {value} %" for name, value in MNIST1D_REFERENCES.items())
    return [
        f"MNIST-1D (static) test accuracy, mean over {r.n} pairs: SDT {100 * r.sdt_mean:.1f} %, "
        f"TET {100 * r.tet_mean:.1f} %. Published references on the default split "
        f"(Greydanus & Kobak 2024): {references}.",
        "",
    ]


def _exclusions(counts: dict) -> str:
    """``39 of 108: sdt 5, tet0.05 27 (cells: ...)``: the runs left out, per loss and per grid
    cell (the folder ``population/<cell>/<run>``); the full list is in ``study_settings.json``."""
    excluded = counts.get("excluded", [])
    if not excluded:
        return "none"
    cells = pd.Series([Path(run).parent.name for run in excluded]).value_counts().sort_index()
    losses = cells.groupby(cells.index.str.split("-lr").str[0]).sum()
    by_loss = ", ".join(f"{loss} {n}" for loss, n in losses.items())
    by_cell = ", ".join(f"{cell} {n}" for cell, n in cells.items())
    return f"{len(excluded)} of {counts.get('runs', 'n/a')}: {by_loss}; per cell: {by_cell}"


def render(
    tables: study_tables.StudyTables, one_draw: pd.DataFrame, settings: dict, figures: list[str]
) -> str:
    """The whole STUDY.md from the tables (:func:`read_tables`) and the recorded settings."""
    paired = tables.paired
    lines = [
        "# Evidence study: does TET find flatter minima, and does flatness predict generalization?",
        "",
        "Generated by `python analysis/study.py` from the saved runs; every number and verdict "
        "below is computed from the CSVs next to this file (`study_runs.csv` → "
        "`study_differences.csv` → `study_paired.csv`), none is written by hand, and a test "
        "recomputes this file from them.",
        "",
        *scale_banner(settings),
        "",
        "## Summary (filled from the numbers)",
        "",
        *summary(tables, one_draw, settings),
        "",
        *reference_lines(paired),
        *design_lines(settings),
        "",
        f"## Paired rule\n\n{PAIRED_RULE}.",
        "",
        "Margins δ (fixed before any result, issue 12):",
        "",
    ]
    for name, margin in MARGINS.items():
        kind = "x |mean of SDT over seeds|" if margin.relative else "absolute"
        lines.append(f"- {name}: {margin.value:g} ({kind}): {margin.reason}")
    for benchmark in settings.get("benchmarks", []):
        table = paired[paired.benchmark == benchmark] if not paired.empty else paired
        if table.empty:
            continue
        description = BENCHMARKS[benchmark].description
        lines += ["", f"## Paired claims: {benchmark} ({description})", ""]
        for family in ("primary", "secondary", "descriptive"):
            lines += [f"{family.capitalize()}:", "", *paired_markdown(table, family), ""]
    if not paired.empty and not one_draw.empty:
        lines += [
            "## Comparison row: one draw, one test set (issue 12)",
            "",
            "Issue 12's study trained every MNIST-1D run on one draw and scored it on one "
            "1,000-sample test set (digits: one split), 10 seeds, flatness on 256 samples; its "
            "intervals covered seeds only.",
            "",
            *one_draw_markdown(paired, one_draw),
            "",
        ]
    lines += [
        "## Subset-to-subset spread of the flatness measures",
        "",
        *subset_markdown(tables.subsets),
        "",
        "## Population on MNIST-1D: flatness against the generalization gap",
        "",
        "Every run trained to the common stopping criterion (train-split L_SDT, eval mode; "
        f"threshold {settings.get('stop_at_train_loss', 'n/a')}, cap "
        f"{settings.get('epoch_cap', 'n/a')} epochs); runs that did not meet it are left out "
        f"({_exclusions(settings.get('population_counts', {}))}). `tet@0.05`: L_TET at "
        "λ 0.05 for every run; `l_tet`: at each run's own λ. p-values from 2,000 permutations of "
        "the gap (seed 0); the runs share seeds, draws and a grid, so read p as a scale, not as "
        "a test of independent samples.",
        "",
        *population_markdown(tables.population),
        "",
        *stage_lines(settings),
        *settings_lines(settings),
        "",
        "## Figures",
        "",
        *[f"![{name}]({name}.png)" for name in figures],
    ]
    return "\n".join(lines) + "\n"


# --- files ---


def _save(figure_and_data, figures: Path, name: str) -> str:
    figure, data = figure_and_data
    save_figure(figure, figures / name)
    save_table(data, figures / f"{name}.csv", na_rep="nan")
    return name


_PER_RUN = ("seed", "data_root", "device", "init_from", "switch_to_tet_at", "mnist1d_seed")
_PER_RUN += ("digits_split_seed", "method")


def _training_settings(folder: Path) -> dict:
    """The config every paired run of a benchmark shares (fields that vary per run dropped)."""
    found = sorted(folder.glob("*/config.json"))
    if not found:
        return {}
    config = json.loads(found[0].read_text())
    return {k: v for k, v in config.items() if k not in _PER_RUN}


def _flatness_settings(folder: Path) -> dict:
    """The settings ``analysis/flatness.py`` recorded in the first part under ``folder``, less
    the seeds that vary per pair."""
    found = sorted(folder.rglob("flatness.json"))
    if not found:
        return {}
    settings = json.loads(found[0].read_text())["settings"]
    return {k: v for k, v in settings.items() if k not in ("data_seed", "probe_seed")}


def read_one_draw() -> pd.DataFrame:
    """The frozen one-draw table (an empty one with its columns if missing)."""
    if ONE_DRAW.exists():
        return pd.read_csv(ONE_DRAW)
    return pd.DataFrame(
        columns=["benchmark", "metric", "n", "mean_difference", "ci_low", "ci_high", "verdict"]
    )


def read_tables(figures: Path) -> tuple[study_tables.StudyTables, dict]:
    """``(tables, settings)`` recomputed from ``study_runs.csv`` and ``study_subset_runs.csv``."""
    settings = json.loads((figures / FILES["settings"]).read_text())
    runs = pd.read_csv(figures / FILES["runs"])
    subset_path = figures / FILES["subset_runs"]
    subsets = pd.read_csv(subset_path) if subset_path.exists() else pd.DataFrame()
    built = study_tables.build_tables(runs, subsets, settings["benchmarks"])
    return built, settings


def write_study(
    root: Path, figures: Path, scale: StudyScale, stage_seconds: dict | None = None
) -> list[str]:
    """Every CSV, figure and STUDY.md from the saved runs; returns the figure names."""
    benchmarks = [b for b in BENCHMARKS if b in scale.pairs]
    runs = study_tables.collect_runs(root, [*benchmarks, "population"])
    subsets = study_tables.collect_subsets(root, runs)
    figures.mkdir(parents=True, exist_ok=True)
    save_table(runs, figures / FILES["runs"], na_rep="nan")
    if not subsets.empty:
        save_table(subsets, figures / FILES["subset_runs"], na_rep="nan")
    population = runs[runs.group == "population"].drop_duplicates("run")
    design = scale.population
    flatness_of = next((b for b in (PRIMARY_BENCHMARK, *benchmarks) if b in benchmarks), "")
    settings = {
        "scale": scale.name,
        "design_version": DESIGN_VERSION,
        "benchmarks": benchmarks,
        "pairs": dict(scale.pairs),
        "test_samples": scale.test_samples,
        "stop_at_train_loss": design.stop_at_train_loss if design else None,
        "epoch_cap": design.epoch_cap if design else None,
        "population_counts": {
            "runs": len(population),
            "met": int(population.met_criterion.sum()) if len(population) else 0,
            "excluded": sorted(population[~population.met_criterion].run)
            if len(population)
            else [],
        },
        "population_grid": dataclasses.asdict(design) if design else None,
        "stage_seconds": stage_seconds or {},
        "configs": {b: _training_settings(root / b) for b in benchmarks},
        "flatness": _flatness_settings(root / "flatness" / flatness_of),
        "population_flatness": _flatness_settings(root / "flatness" / "population"),
    }
    atomic_write_text(figures / FILES["settings"], json.dumps(settings, indent=1) + "\n")
    tables, settings = read_tables(figures)
    for key in ("differences", "paired", "population", "subsets"):
        save_table(getattr(tables, key), figures / FILES[key], na_rep="nan")
    one_draw = read_one_draw()
    names = draw_figures(tables, one_draw, figures)
    text = render(tables, one_draw, settings, names) + connectivity_markdown(root, figures)
    atomic_write_text(figures / "STUDY.md", text)
    return names


def draw_figures(
    tables: study_tables.StudyTables, one_draw: pd.DataFrame, figures: Path
) -> list[str]:
    """The study's figures (PNG, PDF and the plotted data as CSV); returns their names."""
    names, paired, differences = [], tables.paired, tables.differences
    if not paired.empty:
        names.append(
            _save(plots_study.forest_figure(differences, paired, one_draw), figures, "study_forest")
        )
        names.append(
            _save(plots_study.heterogeneity_figure(paired), figures, "study_heterogeneity")
        )
        shown = paired[~paired.metric.str.contains("-linear|@", regex=True)]
        scaled = differences.merge(shown[["benchmark", "metric", "delta"]])
        scaled["scaled"] = scaled.difference / scaled.delta
        names.append(_save(plots_study.paired_figure(scaled, shown), figures, "study_margins"))
    for benchmark, name in (
        ("mnist1d", "study_per_step"),
        ("mnist1d_sequence", "study_per_step_sequence"),
    ):
        steps = study_tables.per_step_frame(tables.runs, benchmark)
        if not steps.empty and steps.t.notna().any():
            names.append(_save(plots_study.per_step_figure(steps, benchmark), figures, name))
    if not tables.population.empty:
        names.append(_save(plots_study.tau_figure(tables.population), figures, "study_tau"))
    return names

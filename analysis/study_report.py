"""The text of STUDY.md from the study's tables: every sentence is a template filled by numbers.

:func:`render` takes the per-benchmark paired tables, the population table and the settings, and
returns Markdown; :func:`summary` writes the short summary from counts of verdicts and the sign
and size of Kendall's tau, never from hand-written conclusions.
"""

from __future__ import annotations

import pandas as pd

from analysis.claims import PAIRED_RULE
from analysis.study_design import BENCHMARKS, MARGINS, SCALES, population_cells

__all__ = [
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
        )  # noqa
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
    "margin δ are code in `analysis/study_design.py`, committed before the full study first ran."
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

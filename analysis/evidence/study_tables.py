"""The study's numbers, each table computed from the one before, so every number is recomputable.

1. :func:`collect_runs` reads the run folders (``config.json``, ``metrics.csv``) and the flatness
   tables into **runs** (``figures/study_runs.csv``): one row per run x loss x measure, with the
   value, its standard error, ``converged``, the products it cost, its first-order part, and the
   run's accuracies and losses (a run's row with ``measure`` empty carries the run alone).
2. :func:`metric_values`: one value per run and metric: ``test_acc``, ``acc_gap``, ``loss_gap``,
   ``train_acc``, every flatness measure of L_SDT and L_TET as ``<measure>/l_<loss>`` and, where
   the measure has a first-order part, ``<measure>-linear/l_<loss>`` = value - first-order part.
3. :func:`paired_differences` (``figures/study_differences.csv``): TET - SDT per benchmark, metric
   and pair, with the measurement error of the difference.
4. :func:`paired_table` (``figures/study_paired.csv``): per benchmark and metric the verdict by
   :data:`analysis.evidence.claims.PAIRED_RULE`; primary endpoints alone, secondary metrics with
   Westfall-Young adjusted p-values over their family; estimator noise against the paired spread.
5. :func:`population_table`: Kendall's tau and granulated psi of every flatness metric with the
   generalization gap over the population runs that met the stopping criterion, with permutation
   p-values and group counts; :func:`subset_table`: subset-to-subset against seed-to-seed spread.

Generalization gap: ``acc_gap = train_acc - test_acc`` (train accuracy in eval mode on the whole
training split) and ``loss_gap = test_l_sdt - train_l_sdt``: the cross-entropy of the
time-averaged output, the classifier that is evaluated, so the same function for SDT and TET runs.
The measurement error of an accuracy is the binomial one of its test set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.evidence.claims import compare_paired, westfall_young
from analysis.evidence.generalization import permutation_null
from analysis.evidence.study_design import (
    DESCRIPTIVE,
    MULTIPLICITY_METHOD,
    NOISE_SHARE,
    PRIMARY_ENDPOINTS,
    claim_of,
    margin_for,
    met_criterion,
)
from analysis.measures.flatness import HEADER

__all__ = [
    "RUN_COLUMNS",
    "AXES",
    "collect_runs",
    "run_folder_of",
    "metric_values",
    "paired_differences",
    "paired_table",
    "population_table",
    "collect_subsets",
    "subset_table",
    "per_step_frame",
    "StudyTables",
    "build_tables",
]

RUN_COLUMNS = (
    "group",
    "run",
    "method",
    "pair",
    "trained_with",
    "tet_lambda",
    "T",
    "lr",
    "batch_size",
    "epochs",
    "stop_at_train_loss",
    "met_criterion",
    "train_acc",
    "test_acc",
    "train_l_sdt",
    "test_l_sdt",
    "train_l_tet",
    "test_l_tet",
    "test_samples",
)
MEASURE_COLUMNS = HEADER[HEADER.index("loss") :]
"""The columns of a ``flatness.csv`` row that describe its measurement (from ``loss`` on)."""
DIFFERENCE_COLUMNS = (
    "benchmark",
    "metric",
    "pair",
    "sdt",
    "tet",
    "difference",
    "stderr",
    "converged",
)
AXES = ("trained_with", "lr", "batch_size")
FLATNESS_LOSSES = ("sdt", "tet")
PERMUTATIONS = 2000


TEST_SET_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "cifar10_dvs": 1_000, "imagenet": 50_000}
"""The official test sets of the paper benchmarks (CIFAR10-DVS: the 9:1 split's tenth), for the
binomial error of a test accuracy."""


def _test_samples(config: dict) -> int:
    if config.get("dataset") == "mnist1d":
        common = int(config.get("mnist1d_test_samples") or 0)
        return common or round(0.2 * int(config.get("mnist1d_samples", 5000)))
    if config.get("dataset") in TEST_SET_SIZES:
        return TEST_SET_SIZES[config["dataset"]]
    return 450  # sklearn digits: 1,797 images, a stratified quarter


def _run_row(folder: Path, root: Path, group: str) -> dict:
    config = json.loads((folder / "config.json").read_text())
    last = pd.read_csv(folder / "metrics.csv").iloc[-1]
    method, lamb = config["method"], float(config["tet_lambda"])
    threshold = config.get("stop_at_train_loss") or None  # 0: no criterion, always met
    return {
        "group": group,
        "run": folder.relative_to(root).as_posix(),
        "method": method,
        "pair": int(config["seed"]),
        "trained_with": "sdt" if method == "sdt" else f"tet{lamb:g}",
        "tet_lambda": lamb,
        "T": int(config["T"]),
        "lr": float(config["lr"]),
        "batch_size": int(config["batch_size"]),
        "epochs": int(last["epoch"]),
        "stop_at_train_loss": threshold,
        "met_criterion": met_criterion(folder),
        "train_acc": float(last["train_eval_acc"]),
        "test_acc": float(last["test_acc"]),
        "train_l_sdt": float(last["train_eval_l_sdt"]),
        "test_l_sdt": float(last["test_l_sdt"]),
        "train_l_tet": float(last["train_eval_l_tet"]),
        "test_l_tet": float(last["test_l_tet"]),
        "test_samples": _test_samples(config),
    }


def collect_runs(root: Path, groups: list[str]) -> pd.DataFrame:
    """Every finished run of ``groups`` (folders under ``root``) joined with its flatness rows
    (``root/flatness/<group>/**/flatness.csv``): :data:`RUN_COLUMNS` + :data:`MEASURE_COLUMNS`."""
    frames = []
    for group in groups:
        runs = [
            _run_row(p.parent, root, group)
            for p in sorted((root / group).rglob("metrics.csv"))
            if (p.parent / "last.pt").exists()
        ]
        if not runs:
            continue
        runs = pd.DataFrame(runs)
        flatness = flatness_rows(root / "flatness" / group, root)
        if flatness.empty:
            frames.append(runs)
            continue
        joined = runs.merge(flatness, on="run", how="left")
        frames.append(joined)
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *MEASURE_COLUMNS])
    table = pd.concat(frames, ignore_index=True)
    for column in MEASURE_COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table[[*RUN_COLUMNS, *MEASURE_COLUMNS]]


def run_folder_of(checkpoint: str, root: Path) -> str:
    """The run folder of a checkpoint path recorded in a ``flatness.csv``, relative to ``root``.

    The path is recorded as the flatness command was given it, relative to the working directory
    of the study that ran it, so a report drawn from another directory (or of a runs folder that
    was moved) finds the run by the longest tail of the path that is a folder under ``root``.
    """
    folder = Path(checkpoint).parent
    if folder.resolve().is_relative_to(root.resolve()):
        return folder.resolve().relative_to(root.resolve()).as_posix()
    for start in range(1, len(folder.parts)):
        tail = Path(*folder.parts[start:])
        if (root / tail).is_dir():
            return tail.as_posix()
    raise ValueError(f"{checkpoint} is not a run under {root}")


def flatness_rows(folder: Path, root: Path, keep_chunk: bool = False) -> pd.DataFrame:
    """Every ``flatness.csv`` under ``folder``, keyed by ``run`` (the run folder relative to
    ``root``), :data:`MEASURE_COLUMNS`; with ``keep_chunk`` the data chunk too (from a
    ``chunk<k>`` folder name; 0 otherwise)."""
    parts = []
    for path in sorted(folder.rglob("flatness.csv")):
        part = pd.read_csv(path)
        part["run"] = [run_folder_of(c, root) for c in part.checkpoint]
        chunk = path.parent.name.rsplit("chunk", 1)
        part["chunk"] = int(chunk[1]) if len(chunk) == 2 else 0
        parts.append(part[["run", "chunk", *MEASURE_COLUMNS]])
    if not parts:
        return pd.DataFrame(columns=["run", "chunk", *MEASURE_COLUMNS])
    table = pd.concat(parts, ignore_index=True)
    return table if keep_chunk else table.drop(columns="chunk")


def _binomial(p: pd.Series, n: pd.Series) -> pd.Series:
    return np.sqrt(p * (1 - p) / n)


def metric_values(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and metric: group, run, method, pair, metric, value, stderr, converged."""
    keys = ["group", "run", "method", "pair"]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "metric", "value", "stderr", "converged"])
    per_run = runs.drop_duplicates("run")
    test_error = _binomial(per_run.test_acc, per_run.test_samples)
    columns = {
        "test_acc": (per_run.test_acc, test_error),
        "acc_gap": (per_run.train_acc - per_run.test_acc, test_error),
        "loss_gap": (per_run.test_l_sdt - per_run.train_l_sdt, np.nan),
        "train_acc": (per_run.train_acc, np.nan),
    }
    frames = [
        per_run[keys].assign(metric=name, value=value.values, stderr=error, converged=True)
        for name, (value, error) in columns.items()
    ]
    flat = runs[runs["loss"].isin(FLATNESS_LOSSES) | runs["loss"].str.startswith("tet@", na=False)]
    if not flat.empty:
        metric = flat.measure + "/l_" + flat["loss"]
        frames.append(
            flat[keys].assign(
                metric=metric, value=flat.value, stderr=flat.stderr, converged=flat.converged
            )
        )
        linear = flat[flat.first_order.notna()]
        frames.append(
            linear[keys].assign(
                metric=linear.measure + "-linear/l_" + linear["loss"],
                value=linear.value - linear.first_order,
                stderr=linear.stderr,
                converged=linear.converged,
            )
        )
    values = pd.concat(frames, ignore_index=True)
    values["converged"] = values.converged.astype(bool)
    return values


def paired_differences(values: pd.DataFrame) -> pd.DataFrame:
    """TET - SDT per benchmark (the values' ``group``), metric and pair: sdt, tet, difference,
    stderr (the measurement error of the difference, ``sqrt(se_sdt^2 + se_tet^2)``), converged
    (both runs)."""
    wide = values.pivot_table(
        index=["group", "metric", "pair"],
        columns="method",
        values=["value", "stderr", "converged"],
        aggfunc="first",
        dropna=False,
    )
    if "value" not in wide or not {"sdt", "tet"} <= set(wide["value"].columns):
        return pd.DataFrame(columns=DIFFERENCE_COLUMNS)
    table = pd.DataFrame(
        {
            "sdt": wide["value"]["sdt"],
            "tet": wide["value"]["tet"],
            "difference": wide["value"]["tet"] - wide["value"]["sdt"],
            "stderr": np.sqrt(wide["stderr"]["sdt"] ** 2 + wide["stderr"]["tet"] ** 2),
            "converged": wide["converged"]["sdt"].astype(bool)
            & wide["converged"]["tet"].astype(bool),
        }
    ).reset_index()
    table = table.rename(columns={"group": "benchmark"})
    return table.dropna(subset=["difference"]).reset_index(drop=True)[list(DIFFERENCE_COLUMNS)]


def _family(metric: str) -> str:
    if metric in DESCRIPTIVE:
        return "descriptive"
    return "primary" if metric in PRIMARY_ENDPOINTS else "secondary"


def _metric_order(metrics) -> list[str]:
    """Primary endpoints, then run metrics, then flatness metrics by name."""
    first = [m for m in (*PRIMARY_ENDPOINTS, "loss_gap", *DESCRIPTIVE) if m in metrics]
    return first + sorted(m for m in metrics if m not in first)


def paired_table(differences: pd.DataFrame) -> pd.DataFrame:
    """The verdict of every metric of one group (its rows of :func:`paired_differences`)."""
    metrics, rows = _metric_order(set(differences.metric)), []
    by_metric = {m: differences[differences.metric == m] for m in metrics}
    deltas = {m: margin_for(m, part.sdt) for m, part in by_metric.items()}
    decided = [m for m in metrics if deltas[m][0] == deltas[m][0]]
    secondary = [m for m in decided if _family(m) == "secondary"]
    adjusted = {}
    if secondary:
        family = {m: dict(zip(by_metric[m].pair, by_metric[m].difference)) for m in secondary}
        adjusted = westfall_young(family, method=MULTIPLICITY_METHOD).adjusted
    for metric in decided:
        part, (delta, margin) = by_metric[metric], deltas[metric]
        family = _family(metric)
        claim = claim_of(metric) or "higher"
        verdict = compare_paired(
            f"TET {claim} {metric}",
            metric,
            dict(zip(part.pair, part.sdt)),
            dict(zip(part.pair, part.tet)),
            claim,
            delta,
            adjusted_p=adjusted.get(metric) if family == "secondary" else None,
            family_size=len(secondary) if family == "secondary" else 1,
        )
        spread = float(part.difference.std()) if len(part) > 1 else math.nan
        errors = part.stderr.dropna()
        noise = float(np.sqrt(np.mean(errors**2))) if len(errors) else math.nan
        share = noise / spread if spread > 0 else math.nan
        rows.append(
            {
                "metric": metric,
                "family": family,
                "claim": "none" if family == "descriptive" else f"TET {claim}",
                "n": verdict.n,
                "sdt_mean": float(part.sdt.mean()),
                "tet_mean": float(part.tet.mean()),
                "mean_difference": verdict.mean,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "p_value": verdict.p_value,
                "p_adjusted": verdict.adjusted_p,
                "family_size": verdict.family_size,
                "delta": delta,
                "delta_rule": f"{margin.value:g} x |SDT mean|" if margin.relative else "absolute",
                "verdict": "descriptive" if family == "descriptive" else verdict.verdict,
                "within_margin": verdict.within_margin,
                "sd_difference": spread,
                "noise": noise,
                "noise_share": share,
                "noise_flag": bool(share > NOISE_SHARE),
                "unconverged": int((~part.converged).sum()),
            }
        )
    return pd.DataFrame(rows)


def population_table(
    values: pd.DataFrame, runs: pd.DataFrame, gap: str = "acc_gap"
) -> pd.DataFrame:
    """Kendall's tau and psi of every flatness metric with the metric ``gap`` (the generalization
    gap unless told) over the population runs that met the stopping criterion, with permutation
    p-values (2,000 permutations, seed 0) and the number of groups per axis."""
    per_run = runs.drop_duplicates("run").set_index("run")
    kept = per_run[per_run.met_criterion].index
    part = values[values.run.isin(kept)]
    wide = part.pivot_table(index="run", columns="metric", values="value", aggfunc="first")
    if wide.empty or gap not in wide or len(wide) < 2:
        return pd.DataFrame()
    hyper = per_run.loc[wide.index, list(AXES)].astype(str)
    hyper = {axis: hyper[axis].tolist() for axis in AXES}
    rows = []
    for metric in [m for m in sorted(wide.columns) if "/l_" in m]:
        null = permutation_null(
            wide[metric].tolist(), wide[gap].tolist(), hyper, AXES, PERMUTATIONS, seed=0
        )
        row = {
            "metric": metric,
            "gap": gap,
            "num_runs": null.num_permuted,
            "tau": null.overall,
            "p_tau": null.p_overall,
            "psi": null.psi,
            "p_psi": null.p_psi,
        }
        for axis in AXES:
            row[f"tau_{axis}"] = null.per_axis[axis]
            row[f"groups_{axis}"] = null.num_groups[axis]
        rows.append(row)
    return pd.DataFrame(rows)


def collect_subsets(root: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """The subset check's rows (``root/flatness/subsets``) and the same checkpoints' paired rows
    (chunk 0) of the same losses: :func:`collect_runs`'s columns and ``chunk``."""
    extra = flatness_rows(root / "flatness" / "subsets", root, keep_chunk=True)
    if extra.empty or runs.empty:
        return pd.DataFrame()
    per_run = runs.drop_duplicates("run")[list(RUN_COLUMNS)]
    main = runs[runs.run.isin(set(extra.run)) & runs["loss"].isin(set(extra["loss"]))]
    table = pd.concat([main.assign(chunk=0), per_run.merge(extra, on="run")], ignore_index=True)
    return table[[*RUN_COLUMNS, "chunk", *MEASURE_COLUMNS]]


def subset_table(subsets: pd.DataFrame, values: pd.DataFrame, group: str) -> pd.DataFrame:
    """Per flatness metric: the spread of one checkpoint's value over disjoint data subsets (root
    mean square over checkpoints of the standard deviation over subsets), next to the spread
    over seeds (one method's runs, variance pooled over SDT and TET) and that of the paired
    differences, in ``group``."""
    if subsets.empty:
        return pd.DataFrame()
    keyed = subsets.assign(run=subsets.run + "#" + subsets.chunk.astype(str))
    found = metric_values(keyed.drop(columns="chunk"))
    found = found[found.metric.str.contains("/l_")]
    found["checkpoint"] = found.run.str.rsplit("#", n=1).str[0]
    within = found.groupby(["metric", "checkpoint"]).value.agg(["var", "count"])
    mine = values[values.group == group]
    differences = paired_differences(mine)
    rows = []
    for metric, part in within[within["count"] > 1].groupby(level="metric"):
        by_method = mine[mine.metric == metric].groupby("method").value.var()
        rows.append(
            {
                "metric": metric,
                "checkpoints": len(part),
                "subsets": int(part["count"].min()),
                "subset_sd": float(np.sqrt(part["var"].mean())),
                "seed_sd": float(np.sqrt(by_method.mean())),
                "difference_sd": float(differences[differences.metric == metric].difference.std()),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["subset_over_seed"] = table.subset_sd / table.seed_sd
    return table


def per_step_frame(runs: pd.DataFrame, group: str) -> pd.DataFrame:
    """λ_max and trace of every L_t, L_SDT and L_TET per run of ``group``, with ``t`` (NaN: not
    L_t)."""
    part = runs[(runs.group == group) & runs.measure.isin(("lambda_max", "trace"))].copy()
    part = part[part["loss"].isin(FLATNESS_LOSSES) | part["loss"].str.startswith("ce_t")]
    part["t"] = pd.to_numeric(part["loss"].str.extract(r"^ce_t(\d+)$")[0])
    return part.rename(columns={"pair": "seed"})[
        ["run", "method", "seed", "loss", "t", "measure", "value"]
    ]


@dataclass
class StudyTables:
    """Every table of the study, as :func:`build_tables` computes them from the runs."""

    runs: pd.DataFrame
    values: pd.DataFrame
    differences: pd.DataFrame
    paired: pd.DataFrame
    population: pd.DataFrame
    subsets: pd.DataFrame


def build_tables(runs: pd.DataFrame, subsets: pd.DataFrame, benchmarks: list[str]) -> StudyTables:
    """All tables from the runs (``study_runs.csv``) and the subset check's rows."""
    values = metric_values(runs)
    paired_values = values[values.group.isin(benchmarks)]
    differences = paired_differences(paired_values)
    tables = [
        paired_table(differences[differences.benchmark == b]).assign(benchmark=b)
        for b in benchmarks
        if (differences.benchmark == b).any()
    ]
    paired = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    population = population_table(
        values[values.group == "population"], runs[runs.group == "population"]
    )
    subset = subset_table(subsets, values, "mnist1d")
    return StudyTables(runs, values, differences, paired, population, subset)

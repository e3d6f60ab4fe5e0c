"""The study's numbers from its saved artifacts: run tables, paired verdicts, Kendall's tau.

Reads the run folders (``config.json``, ``metrics.csv``) and the flatness tables the study wrote
(``analysis.evidence.study_design`` lays them out) into data frames; :func:`paired_table`
applies :func:`analysis.evidence.claims.compare_paired` with the margins of
:data:`analysis.evidence.study_design.MARGINS`; :func:`population_table` applies
:func:`analysis.evidence.generalization.kendall_table`.

Generalization gap: ``acc_gap = train_eval_acc - test_acc`` (train accuracy in eval mode) and
``loss_gap = test_l_sdt - train_eval_l_sdt``: the cross-entropy of the time-averaged output, the
classifier that is evaluated, so the same function for SDT and TET runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.evidence.claims import compare_paired
from analysis.evidence.generalization import kendall_p_value, kendall_table
from analysis.evidence.study_design import margin_for

__all__ = [
    "AXES",
    "run_frame",
    "flatness_frame",
    "wide_frame",
    "paired_table",
    "population_table",
    "per_step_frame",
    "FLATNESS_LOSSES",
    "measure_columns",
    "paired_differences",
]

AXES = ("loss", "T", "lr", "batch_size")
FLATNESS_LOSSES = ("sdt", "tet")
_CLAIMS = {"test_acc": "higher", "acc_gap": "lower", "loss_gap": "lower"}


def _run_row(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text())
    last = pd.read_csv(folder / "metrics.csv").iloc[-1]
    method, lamb = config["method"], float(config["tet_lambda"])
    return {
        "run": folder.name,
        "checkpoint": str(folder / "last.pt"),
        "method": method,
        "seed": int(config["seed"]),
        "loss": "sdt" if method == "sdt" else f"tet{lamb:g}",
        "T": int(config["T"]),
        "lr": float(config["lr"]),
        "batch_size": int(config["batch_size"]),
        "epochs": int(last["epoch"]),
        "test_acc": float(last["test_acc"]),
        "train_acc": float(last["train_eval_acc"]),
        "acc_gap": float(last["train_eval_acc"] - last["test_acc"]),
        "loss_gap": float(last["test_l_sdt"] - last["train_eval_l_sdt"]),
    }


def run_frame(folder: Path) -> pd.DataFrame:
    """One row per finished run under ``folder`` (any depth): settings, accuracies and gaps."""
    rows = [
        _run_row(p.parent)
        for p in sorted(folder.rglob("metrics.csv"))
        if (p.parent / "last.pt").exists()
    ]
    return pd.DataFrame(rows)


def flatness_frame(folder: Path) -> pd.DataFrame:
    """Every ``flatness.csv`` under ``folder`` concatenated (empty frame if none)."""
    parts = [pd.read_csv(p) for p in sorted(folder.rglob("flatness.csv"))]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def wide_frame(runs: pd.DataFrame, flatness: pd.DataFrame) -> pd.DataFrame:
    """Runs with one column ``<measure>/l_<loss>`` per flatness measure of L_SDT and L_TET."""
    if flatness.empty:
        return runs
    part = flatness[flatness["loss"].isin(FLATNESS_LOSSES)].copy()
    part["column"] = part["measure"] + "/l_" + part["loss"]
    wide = part.pivot_table(index="checkpoint", columns="column", values="value", aggfunc="first")
    return runs.merge(wide, left_on="checkpoint", right_index=True, how="left")


def measure_columns(frame: pd.DataFrame) -> list[str]:
    """The flatness columns of a :func:`wide_frame`."""
    return [c for c in frame.columns if "/l_" in c]


def paired_table(frame: pd.DataFrame) -> pd.DataFrame:
    """TET - SDT per seed for every metric: mean, 95 % CI, p, δ and verdict (PAIRED_RULE)."""
    rows = []
    for metric in [*_CLAIMS, *measure_columns(frame)]:
        values = {m: frame[frame.method == m].set_index("seed")[metric] for m in ("sdt", "tet")}
        delta, margin = margin_for(metric, values["sdt"])
        if not delta == delta:
            continue
        direction = _CLAIMS.get(metric, "lower")
        verdict = compare_paired(
            f"TET {direction} {metric}",
            metric,
            values["sdt"].to_dict(),
            values["tet"].to_dict(),
            direction,
            delta,
        )
        rows.append(
            {
                "metric": metric,
                "claim": f"TET {direction}",
                "n": verdict.n,
                "sdt_mean": values["sdt"].mean(),
                "tet_mean": values["tet"].mean(),
                "mean_difference": verdict.mean,
                "ci_low": verdict.ci_low,
                "ci_high": verdict.ci_high,
                "p_value": verdict.p_value,
                "delta": delta,
                "delta_rule": f"{margin.value:g} x |SDT mean|" if margin.relative else "absolute",
                "verdict": verdict.verdict,
                "within_margin": verdict.within_margin,
            }
        )
    return pd.DataFrame(rows)


def population_table(frame: pd.DataFrame, gap: str = "acc_gap") -> pd.DataFrame:
    """Kendall's tau and granulated tau of every flatness measure against ``gap``."""
    columns = measure_columns(frame)
    if not columns or len(frame) < 2:
        return pd.DataFrame()
    hyper = frame[[*AXES, "seed"]].astype(str)
    table = kendall_table({c: frame[c].tolist() for c in columns}, frame[gap].tolist(), hyper, AXES)
    rows = []
    for measure, result in table.items():
        p_value = kendall_p_value(frame[measure].tolist(), frame[gap].tolist())
        row = {
            "measure": measure,
            "gap": gap,
            "tau": result.overall,
            "p_value": p_value,
            "psi": result.psi,
            "num_runs": result.num_runs,
        }
        row.update({f"tau_{axis}": result.per_axis[axis] for axis in AXES})
        rows.append(row)
    return pd.DataFrame(rows)


def per_step_frame(flatness: pd.DataFrame) -> pd.DataFrame:
    """λ_max and trace of every L_t, L_SDT and L_TET per checkpoint, with ``t`` (NaN: not L_t)."""
    if flatness.empty:
        return flatness
    part = flatness[flatness["measure"].isin(("lambda_max", "trace"))].copy()
    step = part["loss"].str.extract(r"^ce_t(\d+)$")[0]
    part["t"] = pd.to_numeric(step)
    return part[["run", "method", "seed", "loss", "t", "measure", "value"]]


def paired_differences(frame: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per-seed TET - SDT of every metric of ``table``, and the same divided by its δ."""
    rows = []
    for _, row in table.iterrows():
        values = {m: frame[frame.method == m].set_index("seed")[row.metric] for m in ("sdt", "tet")}
        for seed in sorted(set(values["sdt"].index) & set(values["tet"].index)):
            difference = float(values["tet"][seed] - values["sdt"][seed])
            rows.append(
                {
                    "metric": row.metric,
                    "seed": seed,
                    "difference": difference,
                    "delta": row.delta,
                    "scaled": difference / row.delta,
                }
            )
    return pd.DataFrame(rows)

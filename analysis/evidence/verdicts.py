"""The paper's claims, each checked on data frames of the artifacts (no file reading here).

Each function returns a :class:`analysis.evidence.claims.Verdict` computed with the rule in
``analysis/evidence/claims.py`` (difference of means beyond two standard errors over seeds); none is
written by hand. ``analysis/report.py`` reads the artifacts and writes the verdicts.
"""

from __future__ import annotations

import pandas as pd

from analysis.evidence.artifacts import MissingArtifact
from analysis.evidence.claims import Verdict, check_all, compare_means

__all__ = ["missing", "momentum", "per_run_claims", "scalability", "tit"]


def _split(table: pd.DataFrame, column: str) -> tuple[list, list]:
    if column not in table:
        return [], []
    return [table[table.method == m][column].dropna().tolist() for m in ("sdt", "tet")]


def per_run_claims(table: pd.DataFrame) -> list[Verdict]:
    """Flatness, generalization and Lemma 4.1 from ``artifacts.run_table``."""
    verdicts = []
    for loss in ("sdt", "tet"):
        for column, name in (
            (f"lambda_max_{loss}", "top Hessian eigenvalue"),
            (f"trace_{loss}", "Hessian trace"),
            (f"eps_sharpness_l_{loss}", "epsilon-sharpness"),
        ):
            sdt, tet = _split(table, column)
            if sdt and tet:
                evidence = f"{name} of L_{loss.upper()}"
                verdicts.append(
                    compare_means("TET finds flatter minima", evidence, sdt, tet, "lower")
                )
    accuracy = _split(table, "test_acc")
    verdicts.append(compare_means("TET generalizes better", "test accuracy", *accuracy, "higher"))
    gap = "generalization gap (train - test accuracy)"
    verdicts.append(compare_means("TET generalizes better", gap, *_split(table, "gap"), "lower"))
    verdicts.append(
        check_all(
            "L_SDT <= L_TET (Lemma 4.1, lambda = 0)",
            "test L_SDT <= mean_t CE(O(t))",
            (table.test_l_sdt <= table.test_l_steps + 1e-9).tolist(),
        )
    )
    return verdicts


def missing(claim: str, error: MissingArtifact) -> Verdict:
    """The verdict of a claim whose artifacts are missing."""
    nan = float("nan")
    return Verdict(claim, f"missing: {error}", nan, nan, "inconclusive at this scale")


def scalability(data: pd.DataFrame) -> Verdict:
    """TET is temporally more scalable (from the rows of timesteps.csv)."""
    data = data[~data.checkpoint.str.contains("switch|init")]
    data = data[data.train_T == data.train_T.mode().iloc[0]]
    at_train = data[data["T"] == data.train_T].set_index("checkpoint").acc
    longer = data[data["T"] > data.train_T].groupby("checkpoint").acc.mean()
    change = (longer - at_train).dropna()
    methods = data.groupby("checkpoint").method.first()
    sdt, tet = ([change[methods[change.index] == m].tolist()] for m in ("sdt", "tet"))
    return compare_means(
        "TET is temporally more scalable",
        "mean accuracy change when tested at T > training T",
        sdt[0],
        tet[0],
        "higher",
    )


TIT_RULE = (
    "TIT row: non-inferiority, holds when TIT is cheaper and its accuracy is not lower by more "
    "than 2 standard errors"
)


def tit(data: pd.DataFrame) -> Verdict:
    """TIT reaches the same accuracy at lower cost (from ``artifacts.tit_rows``).

    Raises:
        MissingArtifact: Without TIT runs.
    """
    tit = data[data.kind == "TIT"]
    if tit.empty:
        raise MissingArtifact("no TIT runs")
    scratch = data[
        (data.kind == "scratch") & (data["T"] == tit["T"].iloc[0]) & (data.method == "tet")
    ]
    verdict = compare_means(
        "TIT reaches the same accuracy at lower cost", "", scratch.test_acc, tit.test_acc, "lower"
    )
    cheaper = tit.cost.mean() < scratch.cost.mean()
    if verdict.verdict == "holds" or not cheaper:  # TIT significantly worse, or not cheaper
        outcome = "does not hold"
    elif verdict.stderr != verdict.stderr:  # fewer than two runs on a side: no error bar
        outcome = "inconclusive at this scale"
    else:
        outcome = "holds"
    evidence = (
        f"TIT accuracy minus scratch (T={tit['T'].iloc[0]}), cost {tit.cost.mean():.0f} vs "
        f"{scratch.cost.mean():.0f} t_s; holds unless TIT is worse by > 2 SE"
    )
    return Verdict(verdict.claim, evidence, verdict.difference, verdict.stderr, outcome)


def momentum(stats: list[pd.DataFrame]) -> Verdict:
    """SDT's gradient vanishes near its minimum while TET's per-step terms do not.

    Args:
        stats: gradient_stats.csv of each SDT main run.
    """
    shared, own = [], []
    for frame in stats:
        last = frame[(frame.epoch == frame.epoch.max()) & (frame.quantity == "error_norm")]
        shared.append(last[last.loss == "sdt"].value.mean())
        own.append(last[last.loss == "tet"].value.mean())
    return compare_means(
        "SDT's gradient vanishes near its minimum while TET's per-step terms do not",
        "at SDT minima: mean_t ||S(O(t)) - y|| vs ||S(mean O) - y||",
        shared,
        own,
        "higher",
    )

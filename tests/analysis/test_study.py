"""The evidence study: design, tables on hand-made runs, and the command end to end (tiny)."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import study_results
from analysis.study import main
from analysis.study_design import MARGINS, SCALES, margin_for, population_cells


def test_full_scale_meets_the_issue():
    full = SCALES["full"]
    assert full.seeds >= 10 and len(population_cells(full)) >= 60
    cells = pd.DataFrame(population_cells(full))
    assert cells.groupby(["cell", "seed"]).size().max() == 1  # every run has its own folder


def test_relative_margin_is_a_share_of_the_sdt_mean():
    delta, margin = margin_for("lambda_max/l_sdt", [2.0, 4.0, float("nan")])
    assert margin is MARGINS["flatness"] and delta == pytest.approx(0.3)
    assert margin_for("test_acc", [0.9])[0] == 0.005


def test_paired_and_population_tables_on_hand_made_runs():
    seeds = range(8)
    rows = [{"method": m, "seed": s, "test_acc": 0.9 + 0.01 * (m == "tet") + 0.001 * s,
             "acc_gap": 0.02, "loss_gap": 0.1 + 0.001 * s, "loss": m, "T": 4, "lr": 0.005,
             "batch_size": 64 if s % 2 else 128, "lambda_max/l_sdt": 1.0 + s + (m == "tet")}
            for m in ("sdt", "tet") for s in seeds]  # fmt: skip
    frame = pd.DataFrame(rows)
    table = study_results.paired_table(frame).set_index("metric")
    assert table.loc["test_acc", "verdict"] == "holds"
    assert table.loc["test_acc", "mean_difference"] == pytest.approx(0.01)
    assert table.loc["lambda_max/l_sdt", "verdict"] == "opposite"
    frame["acc_gap"] = frame["lambda_max/l_sdt"] * 0.01
    taus = study_results.population_table(frame)
    assert taus.tau.iloc[0] == pytest.approx(1.0)


def test_tiny_study_end_to_end(tmp_path):
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    argv = ["--runs", str(runs), "--figures", str(figures), "--scale", "tiny",
            "--data-root", str(tmp_path / "data")]  # fmt: skip
    assert main(argv) == 0
    paired = pd.read_csv(figures / "study_paired.csv")
    assert set(paired.benchmark) == {"digits", "mnist1d"}
    assert {"test_acc", "acc_gap", "lambda_max/l_sdt", "adaptive_worst/l_tet"} <= set(paired.metric)
    assert len(pd.read_csv(figures / "study_population.csv")) == 14  # 7 measures x 2 losses
    text = (figures / "STUDY.md").read_text()
    assert "## Paired claims: mnist1d" in text and "Kendall tau" in text
    for name in ("study_tau", "study_per_step", "study_paired"):
        assert (figures / f"{name}.png").exists() and (figures / f"{name}.csv").exists()
    assert main(argv) == 0  # resumes: every job is skipped

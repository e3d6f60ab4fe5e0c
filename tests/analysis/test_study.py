"""The evidence study: design, tables and report on hand-made runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.evidence import study_tables as study_results
from analysis.evidence.study_design import MARGINS, SCALES, margin_for, population_cells
from analysis.evidence.study_report import render
from analysis.plots import study as plots_study
from analysis.plots.style import save_figure


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
    rows = [
        {
            "method": m,
            "seed": s,
            "test_acc": 0.9 + 0.01 * (m == "tet") + 0.001 * s,
            "acc_gap": 0.02,
            "loss_gap": 0.1 + 0.001 * s,
            "loss": m,
            "T": 4,
            "lr": 0.005,
            "batch_size": 64 if s % 2 else 128,
            "lambda_max/l_sdt": 1.0 + s + (m == "tet"),
        }
        for m in ("sdt", "tet")
        for s in seeds
    ]
    frame = pd.DataFrame(rows)
    table = study_results.paired_table(frame).set_index("metric")
    assert table.loc["test_acc", "verdict"] == "holds"
    assert table.loc["test_acc", "mean_difference"] == pytest.approx(0.01)
    assert table.loc["lambda_max/l_sdt", "verdict"] == "opposite"
    frame["acc_gap"] = frame["lambda_max/l_sdt"] * 0.01
    taus = study_results.population_table(frame)
    assert taus.tau.iloc[0] == pytest.approx(1.0)


def test_report_states_scale_references_and_every_setting():
    rows = [
        {
            "method": m,
            "seed": s,
            "test_acc": 0.95 + 0.01 * (m == "tet") + 0.002 * s,
            "acc_gap": 0.02,
            "loss_gap": 0.1,
        }
        for m in ("sdt", "tet")
        for s in range(4)
    ]
    paired = {"mnist1d": study_results.paired_table(pd.DataFrame(rows))}
    settings = {"scale": "demo", "seeds": 4, "population_runs": 8}
    configs = {"mnist1d": {"model": "mnist1d_snn", "T": 4}}
    text = render(paired, pd.DataFrame(), settings, [], configs, {"rho": 0.05})
    assert (
        "This is a reduced run with fewer seeds" in text and "population runs on MNIST-1D" in text
    )
    assert "SDT 95.3 %, TET 96.3 %" in text and "CNN 94 %" in text
    assert "model: mnist1d_snn" in text and "rho: 0.05" in text and "configs/README.md" in text
    settings["scale"] = "full"
    assert "reduced run" not in render(paired, pd.DataFrame(), settings, [])


# The study end to end (tiny scale, resume included) runs inside tests/analysis/test_demo.py.


def test_study_figures_are_byte_identical_when_redrawn(tmp_path):
    # the strip plot jitters and the per-step bands bootstrap: both must be seeded, and the PDF
    # must carry no creation date
    differences = pd.DataFrame(
        {
            "scaled": [0.1, -0.4, 0.3, 1.2],
            "metric": ["a", "a", "b", "b"],
            "benchmark": ["digits"] * 4,
        }
    )
    table = pd.DataFrame(
        {
            "metric": ["a", "b"],
            "benchmark": ["digits"] * 2,
            "ci_low": [-1.0, 0.0],
            "ci_high": [1.0, 2.0],
            "delta": [1.0, 1.0],
        }
    )
    steps = pd.DataFrame(
        [
            {
                "run": f"r{s}{m}",
                "method": m,
                "seed": s,
                "loss": loss,
                "t": t,
                "measure": measure,
                "value": 1.0 + s + (t or 0) * (m == "sdt"),
            }
            for s in range(4)
            for m in ("sdt", "tet")
            for measure in ("lambda_max", "trace")
            for loss, t in (("ce_t0", 0), ("ce_t1", 1), ("sdt", None), ("tet", None))
        ]
    )
    drawn = []
    for attempt in range(2):
        np.random.seed(attempt)  # whatever the global state, the figures are the same
        save_figure(plots_study.paired_figure(differences, table)[0], tmp_path / "paired.png")
        save_figure(plots_study.per_step_figure(steps)[0], tmp_path / "steps.png")
        drawn.append({p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())})
    assert drawn[0] == drawn[1] and len(drawn[0]) == 4

"""The evidence study: design, each table from the one before, and the report, on hand-made runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.evidence import study_tables
from analysis.evidence.claims import compare_paired, sign_flip_p_value, westfall_young
from analysis.evidence.generalization import permutation_null
from analysis.evidence.study_design import (
    BENCHMARKS,
    MARGINS,
    PRIMARY_ENDPOINTS,
    SCALES,
    SMALL_BENCHMARKS,
    claim_of,
    margin_for,
    population_cells,
)
from analysis.evidence.study_report import render
from analysis.plots import study as plots_study
from analysis.plots.style import save_figure


def test_full_scale_meets_the_issue():
    full = SCALES["full"]
    assert full.pairs["mnist1d"] >= 20 and full.pairs["digits"] >= 12
    assert full.pairs["mnist1d_sequence"] >= 12 and set(full.pairs) == set(SMALL_BENCHMARKS)
    cells = pd.DataFrame(population_cells(full.population))
    assert len(cells) >= 100 and cells.groupby(["cell", "seed"]).size().max() == 1
    levels = [cells[axis].nunique() for axis in ("loss", "lr", "batch_size")]
    assert sum(n >= 3 for n in levels) >= 2
    assert full.population.stop_at_train_loss and full.population.epoch_cap
    assert "normalized_lambda_max/l_sdt" in PRIMARY_ENDPOINTS and len(PRIMARY_ENDPOINTS) == 3


def test_pairs_draw_their_own_data():
    mnist1d, digits = BENCHMARKS["mnist1d"], BENCHMARKS["digits"]
    assert mnist1d.data_args(3) == ["--mnist1d-seed", "1003", "--mnist1d-test-samples", "20000"]
    assert digits.data_args(3) == ["--digits-split-seed", "3"]


def test_relative_margin_is_a_share_of_the_sdt_mean():
    delta, margin = margin_for("lambda_max/l_sdt", [2.0, 4.0, float("nan")])
    assert margin is MARGINS["flatness"] and delta == pytest.approx(0.3)
    assert margin_for("test_acc", [0.9])[0] == 0.005
    assert claim_of("test_acc") == "higher" and claim_of("trace/l_tet") == "lower"
    assert claim_of("train_acc") is None


def _runs(pairs: int = 8, seed: int = 0) -> pd.DataFrame:
    """Hand-made study_runs rows: two flatness measures of two losses per run."""
    rng = np.random.default_rng(seed)
    rows = []
    for pair in range(pairs):
        for method in ("sdt", "tet"):
            tet = method == "tet"
            run = {
                "group": "mnist1d",
                "run": f"mnist1d/{method}-seed{pair}",
                "method": method,
                "pair": pair,
                "trained_with": method,
                "tet_lambda": 0.05,
                "T": 4,
                "lr": 0.005,
                "batch_size": 128,
                "epochs": 20,
                "stop_at_train_loss": np.nan,
                "met_criterion": True,
                "train_acc": 0.99 - 0.004 * tet,
                "test_acc": 0.96 + 0.01 * tet + 0.001 * rng.standard_normal(),
                "train_l_sdt": 0.05,
                "test_l_sdt": 0.15,
                "train_l_tet": 0.3,
                "test_l_tet": 0.4,
                "test_samples": 20000,
            }
            for loss in ("sdt", "tet"):
                for measure, value, first in (
                    ("normalized_lambda_max", 3.0 - tet + 0.1 * rng.standard_normal(), np.nan),
                    ("trace", 100 + 20 * tet + rng.standard_normal(), np.nan),
                    ("adaptive_worst", 0.2 + 0.01 * rng.standard_normal(), 0.05 + 0.1 * tet),
                ):
                    rows.append(
                        {
                            **run,
                            "loss": loss,
                            "measure": measure,
                            "parameter": np.nan,
                            "value": value,
                            "stderr": 2.0 if measure == "trace" else np.nan,
                            "converged": measure != "normalized_lambda_max" or pair != 0,
                            "num_evaluations": 7,
                            "first_order": first,
                            "samples": 1024,
                            "seconds": 1.0,
                        }
                    )
    return pd.DataFrame(rows)


def test_metric_values_and_differences_follow_the_runs():
    runs = _runs()
    values = study_tables.metric_values(runs)
    one = runs[(runs.run == "mnist1d/tet-seed3") & (runs.measure == "adaptive_worst")]
    row = one[one["loss"] == "sdt"].iloc[0]
    found = values[values.run == "mnist1d/tet-seed3"].set_index("metric")
    assert found.loc["adaptive_worst-linear/l_sdt", "value"] == row.value - row.first_order
    assert "trace-linear/l_sdt" not in found.index  # no first-order part
    assert found.loc["test_acc", "stderr"] == pytest.approx(
        math.sqrt(row.test_acc * (1 - row.test_acc) / 20000)
    )
    assert found.loc["acc_gap", "value"] == pytest.approx(row.train_acc - row.test_acc)
    differences = study_tables.paired_differences(values)
    trace = differences[differences.metric == "trace/l_tet"].set_index("pair")
    sdt = values[(values.metric == "trace/l_tet") & (values.method == "sdt")].set_index("pair")
    assert trace.difference.tolist() == pytest.approx((trace.tet - trace.sdt).tolist())
    assert trace.sdt.tolist() == sdt.value.tolist()
    assert trace.stderr.tolist() == pytest.approx([math.sqrt(8.0)] * 8)
    lam = differences[differences.metric == "normalized_lambda_max/l_sdt"]
    assert (~lam.converged).sum() == 1  # pair 0's runs did not converge


def test_paired_table_primaries_alone_secondaries_adjusted_together():
    differences = study_tables.paired_differences(study_tables.metric_values(_runs()))
    table = study_tables.paired_table(differences).set_index("metric")
    assert (
        table.loc["test_acc", "family"] == "primary" and table.loc["test_acc", "verdict"] == "holds"
    )
    assert math.isnan(table.loc["test_acc", "p_adjusted"])
    assert table.loc["normalized_lambda_max/l_sdt", "verdict"] == "holds"
    assert table.loc["normalized_lambda_max/l_sdt", "unconverged"] == 1
    assert table.loc["train_acc", "verdict"] == "descriptive"
    secondary = table[table.family == "secondary"]
    family = {
        m: dict(
            zip(
                differences[differences.metric == m].pair,
                differences[differences.metric == m].difference,
            )
        )
        for m in secondary.index
    }
    expected = westfall_young(family, method="step_down_min_p").adjusted
    assert secondary.p_adjusted.to_dict() == pytest.approx(expected, nan_ok=True)
    assert (secondary.family_size == len(secondary)).all()
    assert table.loc["trace/l_tet", "verdict"] == "opposite"  # TET's trace is higher
    part = differences[differences.metric == "trace/l_tet"]
    p_value = sign_flip_p_value(part.difference.tolist())[0]
    assert table.loc["trace/l_tet", "p_value"] == p_value
    check = compare_paired(
        "c",
        "trace/l_tet",
        dict(zip(part.pair, part.sdt)),
        dict(zip(part.pair, part.tet)),
        "lower",
        table.loc["trace/l_tet", "delta"],
        adjusted_p=expected["trace/l_tet"],
        family_size=len(secondary),
    )
    assert check.verdict == table.loc["trace/l_tet", "verdict"]
    # noise: sqrt(2^2 + 2^2) per difference against the differences' SD
    share = math.sqrt(8.0) / part.difference.std()
    assert table.loc["trace/l_tet", "noise_share"] == pytest.approx(share)
    assert table.loc["trace/l_tet", "noise_flag"] == (share > 0.5)
    assert math.isnan(table.loc["adaptive_worst/l_sdt", "noise_share"])


def _population_runs() -> pd.DataFrame:
    """16 population runs on a 2 x 2 x 2 grid; the first run missed the criterion."""
    rng = np.random.default_rng(1)
    rows = []
    for k, (loss, lr, batch) in enumerate(
        (loss, lr, batch)
        for loss in ("sdt", "tet0.05")
        for lr in (0.005, 0.01)
        for batch in (64, 128)
    ):
        for seed in range(2):
            gap = 0.01 * k + 0.001 * seed
            rows.append(
                {
                    "group": "population",
                    "run": f"population/{loss}-{lr}-{batch}/s{seed}",
                    "method": loss[:3],
                    "pair": seed,
                    "trained_with": loss,
                    "lr": lr,
                    "batch_size": batch,
                    "met_criterion": not (k == 0 and seed == 0),
                    "train_acc": 0.99,
                    "test_acc": 0.99 - gap,
                    "test_samples": 1000,
                    "train_l_sdt": 0.05,
                    "test_l_sdt": 0.1,
                    "loss": "sdt",
                    "measure": "trace",
                    "value": gap + 0.001 * rng.standard_normal(),
                    "stderr": 0.1,
                    "converged": True,
                    "first_order": np.nan,
                }
            )
    return pd.DataFrame(rows)


def test_population_table_leaves_out_runs_that_missed_the_criterion():
    runs = _population_runs()
    values = study_tables.metric_values(runs)
    table = study_tables.population_table(values, runs).set_index("metric")
    kept = runs[runs.met_criterion]
    null = permutation_null(
        kept.value.tolist(),
        (kept.train_acc - kept.test_acc).tolist(),
        {a: kept[a].astype(str).tolist() for a in study_tables.AXES},
        study_tables.AXES,
        2000,
        seed=0,
    )
    row = table.loc["trace/l_sdt"]
    assert row.num_runs == 15 and row.tau == null.overall and row.p_tau == null.p_overall
    assert row.psi == null.psi and row.groups_lr == null.num_groups["lr"]


def test_population_table_correlates_with_any_gap_metric():
    runs = _population_runs()
    values = study_tables.metric_values(runs)
    per_run = values[values.metric == "test_acc"]
    spike_gap = per_run.assign(metric="spike_gap_abs", value=np.linspace(0.3, 0.0, len(per_run)))
    table = study_tables.population_table(
        pd.concat([values, spike_gap], ignore_index=True), runs, gap="spike_gap_abs"
    ).set_index("metric")
    kept = runs[runs.met_criterion]
    null = permutation_null(
        kept.value.tolist(),
        spike_gap.set_index("run").value.loc[kept.run].tolist(),
        {a: kept[a].astype(str).tolist() for a in study_tables.AXES},
        study_tables.AXES,
        2000,
        seed=0,
    )
    row = table.loc["trace/l_sdt"]
    assert row.gap == "spike_gap_abs" and row.num_runs == 15
    assert row.tau == null.overall < 0 and row.p_tau == null.p_overall and row.psi == null.psi


def test_subset_table_compares_subsets_with_seeds():
    runs = _runs(pairs=4)
    values = study_tables.metric_values(runs)
    chosen = runs[runs.pair.isin((0, 1)) & (runs.measure == "trace")]
    subsets = pd.concat(
        [chosen.assign(chunk=c, value=chosen.value + 0.5 * c) for c in range(3)], ignore_index=True
    )
    table = study_tables.subset_table(subsets, values, "mnist1d").set_index("metric")
    row = table.loc["trace/l_sdt"]
    assert row.checkpoints == 4 and row.subsets == 3
    assert row.subset_sd == pytest.approx(0.5)  # SD of (x, x + 0.5, x + 1)
    seed_var = values[values.metric == "trace/l_sdt"].groupby("method").value.var().mean()
    assert row.seed_sd == pytest.approx(math.sqrt(seed_var))


def _settings(scale: str = "full") -> dict:
    return {
        "scale": scale,
        "benchmarks": ["mnist1d"],
        "pairs": {"mnist1d": 8},
        "test_samples": 20000,
        "stop_at_train_loss": 0.05,
        "epoch_cap": 30,
        "population_counts": {
            "runs": 8,
            "met": 5,
            "excluded": [
                "population/sdt-lr0.01-b64/run-seed0",
                "population/tet0.05-lr0.01-b64/run-seed0",
                "population/tet0.05-lr0.01-b64/run-seed1",
            ],
        },
        "stage_seconds": {"paired": 600.0, "population": 1200.0},
        "configs": {"mnist1d": {"model": "mnist1d_snn", "T": 4}},
        "flatness": {"samples": 1024},
    }


def test_report_says_what_a_reader_needs():
    differences = study_tables.paired_differences(study_tables.metric_values(_runs()))
    paired = study_tables.paired_table(differences).assign(benchmark="mnist1d")
    tables = study_tables.StudyTables(
        pd.DataFrame(), pd.DataFrame(), differences, paired, pd.DataFrame(), pd.DataFrame()
    )
    one_draw = pd.DataFrame(
        [
            {
                "benchmark": "mnist1d",
                "metric": "test_acc",
                "n": 10,
                "mean_difference": 0.0052,
                "ci_low": 0.0006,
                "ci_high": 0.0098,
                "verdict": "holds",
            }
        ]
    )
    text = render(tables, one_draw, _settings(), ["study_forest"])
    assert "committed on 2026-12-06" in text and "Westfall-Young" in text
    assert "left out (3 of 8: sdt 1, tet0.05 2; per cell: sdt-lr0.01-b64 1, " in text
    assert "| p | adjusted p |" in text and "one draw, one test set: holds" in text
    assert "Caveat: TET's train accuracy is lower by 0.40 points" in text
    gap = paired.set_index("metric").loc["acc_gap", "mean_difference"]
    assert f"a share of {-0.004 / gap:.0%} at the means" in text
    assert "acc_gap (TET lower): **holds**" in text
    assert "| paired | 10.0 min |" in text and "| total | 30.0 min |" in text
    assert "![study_forest](study_forest.png)" in text and "reduced run" not in text
    assert "reduced run" in render(tables, one_draw, _settings("demo"), [])


def test_study_figures_are_byte_identical_when_redrawn(tmp_path):
    # the strip plot jitters and the per-step bands bootstrap: both must be seeded, and the PDF
    # must carry no creation date
    differences = study_tables.paired_differences(study_tables.metric_values(_runs()))
    paired = study_tables.paired_table(differences).assign(benchmark="mnist1d")
    differences = differences.merge(paired[["benchmark", "metric", "delta"]])
    differences["scaled"] = differences.difference / differences.delta
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
        save_figure(plots_study.paired_figure(differences, paired)[0], tmp_path / "paired.png")
        save_figure(plots_study.per_step_figure(steps)[0], tmp_path / "steps.png")
        forest = plots_study.forest_figure(differences, paired, pd.DataFrame())
        save_figure(forest[0], tmp_path / "forest.png")
        save_figure(plots_study.heterogeneity_figure(paired)[0], tmp_path / "noise.png")
        drawn.append({p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())})
    assert drawn[0] == drawn[1] and len(drawn[0]) == 8
    assert set(forest[1].row) >= {"mean", "pair 0", "pair 7"}


def test_only_runs_that_met_the_criterion_are_measured(tmp_path):
    from analysis.evidence.study_design import met_criterion, population_flatness_jobs

    for name, last, threshold in (("a", 0.05, 0.1), ("b", 0.2, 0.1), ("c", 0.2, 0.0)):
        run = tmp_path / "population" / name / "run"
        run.mkdir(parents=True)
        (run / "config.json").write_text(f'{{"stop_at_train_loss": {threshold}}}')
        (run / "metrics.csv").write_text(f"epoch,train_eval_l_sdt\n1,0.5\n2,{last}\n")
        (run / "last.pt").write_bytes(b"")
    runs = sorted((tmp_path / "population").glob("*/run"))
    assert [met_criterion(r) for r in runs] == [True, False, True]  # c: no criterion
    (job,) = population_flatness_jobs(tmp_path, SCALES["full"])
    measured = [a for a in job.commands[0] if a.endswith("last.pt")]
    assert measured == [str(runs[0] / "last.pt"), str(runs[2] / "last.pt")]


def test_a_run_is_found_whatever_directory_recorded_its_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "elsewhere" / "runs-study"
    (root / "mnist1d" / "run-a").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    # as the study recorded it (relative to its own working directory), absolute, and relative
    # to this directory
    for recorded in (
        "runs-study/mnist1d/run-a/last.pt",
        str(root / "mnist1d" / "run-a" / "last.pt"),
        "elsewhere/runs-study/mnist1d/run-a/last.pt",
    ):
        assert study_tables.run_folder_of(recorded, root) == "mnist1d/run-a"
    with pytest.raises(ValueError, match="not a run under"):
        study_tables.run_folder_of("runs-study/mnist1d/run-b/last.pt", root)

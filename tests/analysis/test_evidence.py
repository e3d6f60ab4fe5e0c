"""The evidence readers, verdicts, report helpers and figure catalogue, on a runs folder built by
hand (config.json + metrics.csv per run, named by RunLayout) and on hand-made frames."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.evidence import artifacts, report, verdicts
from analysis.evidence.artifacts import MissingArtifact
from analysis.evidence.claims import FAILS, HOLDS, UNSURE
from analysis.evidence.figures import FIGURES, REPORT_ORDER
from toolkit.errors import ConfigError
from training.runs.config import TrainConfig
from training.runs.layout import RunFiles, RunLayout

# (method, seed, T, last test accuracy, last train accuracy, changes)
RUNS = [
    ("sdt", 0, 4, 0.80, 0.90, {}),
    ("sdt", 1, 4, 0.82, 0.91, {}),
    ("tet", 0, 4, 0.85, 0.88, {}),
    ("tet", 1, 4, 0.86, 0.89, {}),
    ("tet", 0, 2, 0.70, 0.75, {}),
]


def _write_run(
    root: Path,
    method: str,
    seed: int,
    T: int,
    test: float,
    train: float,
    epochs: int = 3,
    **changes,
) -> RunFiles:
    config = TrainConfig(dataset="digits", method=method, seed=seed, T=T, epochs=epochs, **changes)
    files = RunLayout(root).run(config)
    files.path.mkdir(parents=True)
    stored = {**dataclasses.asdict(config), "input_shape": [1, 8, 8], "num_classes": 10}
    files.config.write_text(json.dumps(stored))
    epochs_done = range(1, epochs + 1)
    pd.DataFrame(
        {
            "epoch": list(epochs_done),
            "method": [method] * epochs,
            "test_acc": [test - 0.1 * (epochs - e) for e in epochs_done],
            "train_eval_acc": [train] * epochs,
            "test_l_sdt": [0.5 + 0.1 * seed] * epochs,
            "test_l_tet": [0.9] * epochs,
            "test_l_steps": [0.7 + 0.1 * seed] * epochs,
        }
    ).to_csv(files.metrics, index=False)
    return files


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> RunLayout:
    root = tmp_path_factory.mktemp("runs")
    files = [_write_run(root, m, s, T, test, train, **c) for m, s, T, test, train, c in RUNS]
    parent = files[-1]  # the T = 2 TET run
    _write_run(root, "tet", 0, 4, 0.84, 0.86, epochs=1, init_from=str(parent.last))
    _write_run(root, "sdt", 0, 4, 0.83, 0.9, switch_to_tet_at=1)
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.json").write_text(json.dumps({"method": "sdt"}))  # no metrics
    (root / "analysis").mkdir()
    layout = RunLayout(root)
    main = [f for f in files[:4]]
    hessian = layout.hessian("sdt")
    hessian.mkdir(parents=True)
    rows = []
    for i, f in enumerate(main):
        ckpt = str(f.last)
        rows += [
            (ckpt, "top_eigenvalue", 0, 10.0 + i, "", "sdt"),
            (ckpt, "top_eigenvalue", 1, 1.0, "", "sdt"),
            (ckpt, "trace", 0, 100.0 + i, 0.5, "sdt"),
            (ckpt, "loss", 0, 0.3, "", "sdt"),
        ]
    columns = ["checkpoint", "quantity", "index", "value", "stderr", "loss"]
    pd.DataFrame(rows, columns=columns).to_csv(hessian / "hessian.csv", index=False)
    layout.sharpness.mkdir(parents=True)
    sharp = [
        (str(f.last), m, metric, value)
        for i, f in enumerate(main)
        for m, metric, value in (
            ("epsilon_sharpness", "l_sdt", 1.0 + i),
            ("epsilon_sharpness", "l_tet", 2.0 + i),
            ("random_perturbation", "l_sdt", 99.0),
        )
    ]
    frame = pd.DataFrame(sharp, columns=["checkpoint", "measure", "metric", "value"])
    frame.to_csv(layout.sharpness / "sharpness.csv", index=False)
    return layout


# --- artifacts ---


def test_runs_layout_refuses_a_file(tmp_path):
    assert artifacts.runs_layout(tmp_path) == RunLayout(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^--runs .*file is not a folder; expected the runs"):
        artifacts.runs_layout(tmp_path / "file")
    with pytest.raises(ConfigError, match="is not a folder"):
        artifacts.runs_layout(tmp_path / "missing")


def test_find_runs(layout):
    runs = artifacts.find_runs(layout)
    names = [run.name for run in runs]
    assert names == sorted(names) and len(runs) == 7 and "unfinished" not in names
    roles = {run.name: run.role for run in runs}
    assert roles["digits-digits_snn-T4-tet-init-seed0"] == "tit"
    assert roles["digits-digits_snn-T4-sdt-switch1-seed0"] == "switch"
    assert sum(role == "plain" for role in roles.values()) == 5
    run = next(r for r in runs if r.name == "digits-digits_snn-T4-sdt-seed1")
    assert (run.method, run.seed, run.T, run.input_shape) == ("sdt", 1, 4, (1, 8, 8))
    assert run.metrics().test_acc.iloc[-1] == pytest.approx(0.82)


def test_find_runs_without_runs(tmp_path):
    with pytest.raises(
        MissingArtifact, match=r"^no runs under .*; train with: python training/run.py --out "
    ):
        artifacts.find_runs(RunLayout(tmp_path))


def test_main_runs_are_plain_runs_at_the_common_T(layout):
    runs = artifacts.find_runs(layout)
    main = artifacts.main_runs(runs)
    assert sorted((r.method, r.seed) for r in main) == [
        ("sdt", 0),
        ("sdt", 1),
        ("tet", 0),
        ("tet", 1),
    ]
    assert all(r.T == 4 and r.role == "plain" for r in main)
    assert [r.T for r in artifacts.main_runs(runs, T=2)] == [2]
    assert artifacts.main_runs([r for r in runs if r.role != "plain"]) == []


def test_read_csv_names_the_command(tmp_path):
    with pytest.raises(MissingArtifact, match=r"x\.csv is missing; it is made by: make it"):
        artifacts.read_csv(tmp_path / "x.csv", "make it")


def test_run_table(layout):
    table = artifacts.run_table(layout).set_index("run")
    assert len(table) == 4
    row = table.loc["digits-digits_snn-T4-sdt-seed1"]
    assert (row.method, row.seed) == ("sdt", 1)
    assert row.test_acc == pytest.approx(0.82) and row.gap == pytest.approx(0.91 - 0.82)
    assert row.test_l_sdt == pytest.approx(0.6) and row.test_l_steps == pytest.approx(0.8)
    names = [
        f"digits-digits_snn-T4-{m}-seed{s}"
        for m, s in (("sdt", 0), ("sdt", 1), ("tet", 0), ("tet", 1))
    ]
    assert table.loc[names, "lambda_max_sdt"].tolist() == [10.0, 11.0, 12.0, 13.0]  # index 0 only
    assert table.loc[names, "trace_sdt"].tolist() == [100.0, 101.0, 102.0, 103.0]
    assert table.lambda_max_tet.isna().all() and table.trace_tet.isna().all()  # not computed
    assert table.loc[names, "eps_sharpness_l_sdt"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert table.loc[names, "eps_sharpness_l_tet"].tolist() == [2.0, 3.0, 4.0, 5.0]


def test_run_table_without_analyses(tmp_path):
    for method, seed, T, test, train, changes in RUNS[:2]:
        _write_run(tmp_path, method, seed, T, test, train, **changes)
    table = artifacts.run_table(RunLayout(tmp_path))
    assert len(table) == 2 and table.lambda_max_sdt.isna().all()
    assert "eps_sharpness_l_sdt" not in table


def test_tit_rows(layout):
    rows = artifacts.tit_rows(layout).set_index("run")
    assert len(rows) == 6  # plain and TIT; the switch run is not one
    tit = rows.loc["digits-digits_snn-T4-tet-init-seed0"]
    assert (tit.kind, tit.method, tit["T"], tit.seed) == ("TIT", "tet", 4, 0)
    assert tit.cost == 4 * 1 + 2 * 3  # its epoch at T = 4 plus the parent's three at T = 2
    assert tit.test_acc == pytest.approx(0.84)
    scratch = rows.loc["digits-digits_snn-T4-tet-seed0"]
    assert (scratch.kind, scratch.cost) == ("scratch", 12)


def test_switch_metrics(layout):
    data, switch = artifacts.switch_metrics(layout)
    assert switch == 1
    assert sorted(data.run.unique()) == [
        "digits-digits_snn-T4-sdt-seed0",
        "digits-digits_snn-T4-sdt-switch1-seed0",
    ]
    assert len(data) == 6


def test_timesteps_table(layout, tmp_path):
    with pytest.raises(MissingArtifact) as info:
        artifacts.timesteps_table(layout)
    assert str(info.value) == (
        f"{layout.timesteps / 'timesteps.csv'} is missing; it is made by: python "
        f"analysis/timesteps.py {layout.root}/*/last.pt --out {layout.timesteps}"
    )
    with pytest.raises(MissingArtifact, match=r"made by: custom$"):
        artifacts.timesteps_table(layout, "custom")
    here = RunLayout(tmp_path)
    here.timesteps.mkdir(parents=True)
    pd.DataFrame({"checkpoint": ["a"], "T": [2], "acc": [0.5]}).to_csv(
        here.timesteps / "timesteps.csv", index=False
    )
    assert artifacts.timesteps_table(here).acc.tolist() == [0.5]


def test_hessian_frame_densities_and_surfaces(layout):
    frame = artifacts.hessian_frame(layout, layout.hessian("sdt"))
    assert set(frame.method) == {"sdt", "tet"} and frame.run.str.startswith("digits-").all()
    assert artifacts.hessian_densities(layout) is None
    with pytest.raises(
        MissingArtifact,
        match=r"hessian\.csv is missing; it is made by: python analysis/hessian\.py",
    ):
        artifacts.hessian_frame(layout, layout.hessian("tet"))
    with pytest.raises(
        MissingArtifact, match=r"^no surface in .*make it with: python analysis/surface\.py"
    ):
        artifacts.surface(layout, "sdt")
    with pytest.raises(
        MissingArtifact, match=r"gradient_stats\.csv is missing; it is made by: train"
    ):
        artifacts.gradient_stats(artifacts.main_runs(artifacts.find_runs(layout)), "train")


# --- verdicts ---


def _table(**columns) -> pd.DataFrame:
    base = {
        "method": ["sdt"] * 3 + ["tet"] * 3,
        "test_acc": [0.80, 0.81, 0.82, 0.90, 0.91, 0.92],
        "gap": [0.10, 0.11, 0.12, 0.10, 0.12, 0.11],
        "test_l_sdt": [0.5] * 6,
        "test_l_steps": [0.6] * 6,
    }
    return pd.DataFrame({**base, **columns})


def test_per_run_claims():
    table = _table(
        lambda_max_sdt=[10.0, 11.0, 12.0, 5.0, 6.0, 7.0], trace_tet=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    )
    found = verdicts.per_run_claims(table)
    assert [v.evidence for v in found] == [
        "top Hessian eigenvalue of L_SDT",
        "Hessian trace of L_TET",
        "test accuracy",
        "generalization gap (train - test accuracy)",
        "test L_SDT <= mean_t CE(O(t)) (6/6 runs)",
    ]
    assert [v.verdict for v in found] == [HOLDS, FAILS, HOLDS, UNSURE, HOLDS]
    assert found[0].claim == "TET finds flatter minima" and found[0].difference == pytest.approx(
        -5.0
    )
    assert found[2].difference == pytest.approx(0.1) and found[2].claim == "TET generalizes better"
    broken = verdicts.per_run_claims(_table(test_l_steps=[0.6, 0.6, 0.4, 0.6, 0.6, 0.6]))
    assert broken[-1].verdict == FAILS and "(5/6 runs)" in broken[-1].evidence


def test_per_run_claims_skip_one_sided_columns():
    table = _table(lambda_max_sdt=[1.0, 2.0, 3.0, None, None, None])
    assert [v.evidence for v in verdicts.per_run_claims(table)][0] == "test accuracy"


def _timesteps_rows() -> pd.DataFrame:
    rows = []
    accuracy = {  # checkpoint -> (method, train_T, {T: acc})
        "runs/sdt-seed0/last.pt": ("sdt", 4, {4: 0.80, 6: 0.70, 8: 0.60}),
        "runs/sdt-seed1/last.pt": ("sdt", 4, {4: 0.82, 6: 0.74, 8: 0.62}),
        "runs/tet-seed0/last.pt": ("tet", 4, {4: 0.85, 6: 0.84, 8: 0.84}),
        "runs/tet-seed1/last.pt": ("tet", 4, {4: 0.86, 6: 0.86, 8: 0.85}),
        "runs/tet-T2-seed0/last.pt": ("tet", 2, {2: 0.5, 4: 0.1}),  # another train_T: dropped
        "runs/sdt-switch1-seed0/last.pt": ("sdt", 4, {4: 0.9, 8: 0.0}),  # dropped
    }
    for ckpt, (method, train_T, accs) in accuracy.items():
        rows += [
            {"checkpoint": ckpt, "method": method, "train_T": train_T, "T": T, "acc": a}
            for T, a in accs.items()
        ]
    return pd.DataFrame(rows)


def test_scalability():
    found = verdicts.scalability(_timesteps_rows())
    sdt = [(0.70 + 0.60) / 2 - 0.80, (0.74 + 0.62) / 2 - 0.82]
    tet = [(0.84 + 0.84) / 2 - 0.85, (0.86 + 0.85) / 2 - 0.86]
    assert found.difference == pytest.approx(sum(tet) / 2 - sum(sdt) / 2, abs=1e-12)
    stderr = math.sqrt(pd.Series(sdt).var() / 2 + pd.Series(tet).var() / 2)
    assert found.stderr == pytest.approx(stderr, rel=1e-9)
    assert found.verdict == HOLDS and found.claim == "TET is temporally more scalable"


def _tit_frame(tit_accs, tit_cost=10, scratch_accs=(0.85, 0.86, 0.87)) -> pd.DataFrame:
    rows = [dict(kind="scratch", method="tet", T=4, cost=12, test_acc=a) for a in scratch_accs]
    rows += [dict(kind="scratch", method="sdt", T=4, cost=12, test_acc=0.1)]  # not compared
    rows += [dict(kind="scratch", method="tet", T=2, cost=6, test_acc=0.1)]
    rows += [dict(kind="TIT", method="tet", T=4, cost=tit_cost, test_acc=a) for a in tit_accs]
    return pd.DataFrame(rows)


def test_tit():
    same = verdicts.tit(_tit_frame([0.855, 0.86, 0.865]))
    assert same.verdict == HOLDS and same.difference == pytest.approx(0.0, abs=1e-12)
    assert "cost 10 vs 12 t_s" in same.evidence and "(T=4)" in same.evidence
    assert verdicts.tit(_tit_frame([0.60, 0.61, 0.62])).verdict == FAILS  # clearly worse
    assert verdicts.tit(_tit_frame([0.855, 0.86, 0.865], tit_cost=20)).verdict == FAILS  # dearer
    assert verdicts.tit(_tit_frame([0.86])).verdict == UNSURE  # one TIT run: no error bar
    with pytest.raises(MissingArtifact, match="no TIT runs"):
        verdicts.tit(_tit_frame([]))


def test_momentum_and_missing():
    def stats(sdt: float, tet: float) -> pd.DataFrame:
        rows = [
            dict(epoch=e, quantity=q, loss=loss, t=t, value=v)
            for e in (1, 2)
            for t in (0, 1)
            for q, loss, v in (
                ("error_norm", "sdt", sdt * e / 2),
                ("error_norm", "tet", tet),
                ("grad_norm", "sdt", 100.0),
            )
        ]
        return pd.DataFrame(rows)

    found = verdicts.momentum([stats(0.10, 1.0), stats(0.12, 1.1), stats(0.11, 0.9)])
    assert found.verdict == HOLDS and found.difference == pytest.approx(1.0 - 0.11, abs=1e-12)
    missing = verdicts.missing("a claim", MissingArtifact("x.csv is missing"))
    assert (missing.claim, missing.evidence, missing.verdict) == (
        "a claim",
        "missing: x.csv is missing",
        UNSURE,
    )
    assert math.isnan(missing.difference) and math.isnan(missing.stderr)


# --- report ---


def test_analysis_settings(tmp_path):
    layout = RunLayout(tmp_path)
    assert report.analysis_settings(layout) == ["- no analysis results found"]
    settings = {
        "samples": 64,
        "split": "train",
        "seed": 0,
        "dtype": "float64",
        "top_k": 3,
        "tol": 1e-3,
        "trace": "hutch++",
        "num_matvecs": 30,
        "density": True,
        "density_steps": 20,
        "density_repeats": 2,
    }
    layout.hessian("tet").mkdir(parents=True)
    (layout.hessian("tet") / "hessian.json").write_text(json.dumps({"settings": settings}))
    layout.hessian_epochs.mkdir(parents=True)
    (layout.hessian_epochs / "hessian.json").write_text(
        json.dumps({"settings": {**settings, "trace": "none", "density": False}})
    )
    layout.hessian("sdt").mkdir(parents=True)
    (layout.hessian("sdt") / "hessian.json").write_text("{broken")  # unreadable: skipped
    layout.sharpness.mkdir(parents=True)
    (layout.sharpness / "sharpness.json").write_text(
        json.dumps(
            {
                "settings": {"epsilon": 1e-3, "epsilon_steps": 5, "radius": [0.1], "draws": 4},
                "data": {"samples": 32, "split": "train", "seed": 1},
            }
        )
    )
    surface = layout.surface("sdt")
    surface.mkdir(parents=True)
    (surface / "surface_last_random_2d.json").write_text(
        json.dumps(
            {
                "grid": {"shape": [5, 7]},
                "data": {"num_samples": 16, "split": "train"},
                "directions": {"kind": "random"},
            }
        )
    )
    assert report.analysis_settings(layout) == [
        "- hessian_tet: 64 train samples (seed 0), float64, top-3 Lanczos to relative residual "
        "0.001, trace hutch++ with 30 products, SLQ 20 steps x 2 probes",
        "- hessian_epochs: 64 train samples (seed 0), float64, top-3 Lanczos to relative residual "
        "0.001, no trace",
        "- sharpness: 32 train samples (seed 1), epsilon 0.001 with 5 ascent steps, radii [0.1] "
        "with 4 random directions each",
        "- surface sdt: 5x7 grid, 16 train samples, directions random",
    ]


def test_study_links(tmp_path):
    assert report.study_links(tmp_path) == []
    (tmp_path / "study-demo").mkdir()
    (tmp_path / "study-demo" / "STUDY.md").write_text("x")
    lines = report.study_links(tmp_path)
    assert lines[0] == "## Deciding the claims"
    assert [line for line in lines if line.startswith("- [")] == [
        line for line in lines if line.startswith("- [study-demo/STUDY.md](study-demo/STUDY.md)")
    ]
    (tmp_path / "STUDY.md").write_text("x")
    assert sum(line.startswith("- [") for line in report.study_links(tmp_path)) == 2


def test_claims_and_render_on_the_hand_made_folder(layout, tmp_path):
    table = artifacts.run_table(layout)
    found = report.claims(layout, table)
    by_claim = {v.claim: v for v in found}
    assert by_claim["TET is temporally more scalable"].evidence.startswith("missing: ")
    assert by_claim["TIT reaches the same accuracy at lower cost"].verdict == UNSURE  # one TIT run
    assert (
        "gradient_stats.csv is missing"
        in by_claim[
            "SDT's gradient vanishes near its minimum while TET's per-step terms do not"
        ].evidence
    )
    (tmp_path / "fig7_tit.png").write_bytes(b"png")
    text = report.render(layout, tmp_path)
    assert text.startswith("# Reproduction report: TET vs SDT")
    assert "| SDT | " in text and "| TET | " in text and "seeds: [0, 1]" in text
    assert "![fig7_tit](fig7_tit.png)" in text and "fig2_landscapes.png" not in text
    assert text.count("**") == 2 * len(found)


# --- the figure catalogue ---


def test_every_figure_is_in_the_report_once():
    assert set(FIGURES) == set(REPORT_ORDER) and len(REPORT_ORDER) == len(set(REPORT_ORDER))
    assert all(callable(draw) for draw in FIGURES.values())


def test_catalogue_figures_read_their_artifacts(layout):
    figure, data = FIGURES["fig7_tit"](layout)
    assert len(data) == 3 and set(data.kind) == {"scratch", "TIT"}  # TET at T = 4
    figure, data = FIGURES["fig5_switch"](layout)
    assert len(data) == 6
    with pytest.raises(MissingArtifact, match="timesteps.csv is missing"):
        FIGURES["fig6_timesteps"](layout)
    with pytest.raises(MissingArtifact, match="no surface in"):
        FIGURES["fig2_landscapes"](layout)

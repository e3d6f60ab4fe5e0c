"""The whole chain at a tiny scale: every figure, the study and the report, then a rerun that
skips all (the study's own resume included)."""

import pandas as pd
import pytest

from analysis.demo import main
from analysis.evidence.figures import FIGURES
from analysis.pipeline.demo import TINY, analysis_stages, study_stage, training_stages
from training.runs.layout import RunLayout


@pytest.mark.slow
def test_tiny_demo_produces_every_figure_and_resumes_without_work(tmp_path, capsys):
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    assert main(["--tiny", "--runs", str(runs), "--figures", str(figures)]) == 0
    for name in FIGURES:
        for suffix in (".png", ".pdf", ".csv"):
            assert (figures / f"{name}{suffix}").is_file(), f"{name}{suffix} missing"
    report = (figures / "REPORT.md").read_text()
    assert "| TET finds flatter minima |" in report and "**" in report
    assert "[study-demo/STUDY.md](study-demo/STUDY.md)" in report
    study = figures / "study-demo"
    paired = pd.read_csv(study / "study_paired.csv")
    assert set(paired.benchmark) == {"digits", "mnist1d", "mnist1d_sequence"}
    expected = {"test_acc", "acc_gap", "normalized_lambda_max/l_sdt", "adaptive_worst-linear/l_tet"}
    assert expected <= set(paired.metric) and set(paired.family) == {
        "primary",
        "secondary",
        "descriptive",
    }
    population = pd.read_csv(study / "study_population.csv")
    assert {"trace/l_tet@0.05", "trace/l_tet", "trace/l_sdt"} <= set(population.metric)
    assert (population.num_runs == 4).all()  # every run met the (tiny) criterion
    rows = pd.read_csv(study / "study_runs.csv")
    assert {"value", "stderr", "converged", "num_evaluations", "first_order"} <= set(rows)
    assert set(pd.read_csv(study / "study_differences.csv").benchmark) == set(paired.benchmark)
    assert len(pd.read_csv(study / "study_subsets.csv")) > 0
    text = (study / "STUDY.md").read_text()
    assert "## Paired claims: mnist1d " in text and "permutation" in text
    assert "Scale `tiny`" in text and "reduced run" in text
    for name in ("study_tau", "study_per_step", "study_margins", "study_forest"):
        assert (study / f"{name}.png").exists() and (study / f"{name}.csv").exists()
    checkpoints = {p: p.stat().st_mtime_ns for p in runs.glob("*/last.pt")}
    capsys.readouterr()

    assert main(["--tiny", "--runs", str(runs), "--figures", str(figures)]) == 0
    err = capsys.readouterr().err
    stages = [line for line in err.splitlines() if line.startswith("[demo ")]
    work = [line for line in stages if "] figures" not in line and "] report" not in line]
    assert work and all(line.endswith("done, skipped") for line in work), stages
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/last.pt")} == checkpoints


def test_every_stage_is_done_only_when_its_runs_say_so(tmp_path):
    # figures/ is committed, so a fresh clone has every figure: a stage that is skipped because
    # of a file under figures/ alone would never run there
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    layout = RunLayout(runs)
    stages = [*training_stages(layout, TINY), *analysis_stages(layout, TINY)]
    for stage in [*stages, study_stage(layout, figures, tiny=True)]:
        assert any(runs in path.parents for path in stage.outputs), stage.name

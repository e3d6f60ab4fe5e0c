"""The whole chain at a tiny scale: every figure and the report, then a rerun that skips all."""

import pytest

from analysis.demo import main
from analysis.figures import FIGURES


@pytest.mark.slow
def test_tiny_demo_produces_every_figure_and_resumes_without_work(tmp_path, capsys):
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    assert main(["--tiny", "--runs", str(runs), "--figures", str(figures)]) == 0
    for name in FIGURES:
        for suffix in (".png", ".pdf", ".csv"):
            assert (figures / f"{name}{suffix}").is_file(), f"{name}{suffix} missing"
    report = (figures / "REPORT.md").read_text()
    assert "| TET finds flatter minima |" in report and "**" in report
    checkpoints = {p: p.stat().st_mtime_ns for p in runs.glob("*/last.pt")}
    capsys.readouterr()

    assert main(["--tiny", "--runs", str(runs), "--figures", str(figures)]) == 0
    err = capsys.readouterr().err
    stages = [line for line in err.splitlines() if line.startswith("[demo ")]
    work = [line for line in stages if not line.endswith(("figures ...", "report ..."))]
    assert work and all(line.endswith("done, skipped") for line in work), stages
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/last.pt")} == checkpoints

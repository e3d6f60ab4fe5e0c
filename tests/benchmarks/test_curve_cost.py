"""benchmarks/curve_cost.py --dry-run: trains two tiny runs, fits a curve, writes its timings."""

import json

import pytest

from benchmarks.curve_cost import main


@pytest.mark.slow  # two digits runs of one epoch in a subprocess, then a fit: ~30 s
def test_dry_run_reports_the_ratio(tmp_path, capsys):
    assert main(["--dry-run", "--out", str(tmp_path)]) == 0
    found = json.loads((tmp_path / "curve_cost.json").read_text())
    assert len(found["training_seconds"]) == 2 and found["fit_seconds"] > 0
    assert found["fit_over_training"] > 0 and "fit / training" in capsys.readouterr().out

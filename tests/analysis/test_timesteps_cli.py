import subprocess
import sys

import pandas as pd
import pytest

from analysis.timesteps import main
from tests.conftest import REPO
from tests.helpers import exit_code
from training.run import main as train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = ["--method", "tet", "--epochs", "1", "--quiet", "--no-gradient-stats", "--out", str(out)]
    assert train(argv) == 0
    return out / "digits-digits_snn-T4-tet-seed0"


def test_timesteps_csv_matches_training_metrics_at_the_training_T(run, tmp_path, capsys):
    argv = [str(run / "last.pt"), "--T", "1", "4", "8", "--split", "test"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "timesteps.csv")
    assert list(table["T"]) == [1, 4, 8] and (table.train_T == 4).all()
    at_train = table[table["T"] == 4].iloc[0]
    metrics = pd.read_csv(run / "metrics.csv").iloc[-1]
    assert at_train.acc == pytest.approx(metrics.test_acc, abs=1e-12)
    assert at_train.l_tet == pytest.approx(metrics.test_l_tet, rel=1e-6)
    assert (table.l_sdt <= table.l_steps + 1e-9).all()
    assert "TET" in capsys.readouterr().out


def test_timesteps_bad_input(tmp_path):
    script = [sys.executable, str(REPO / "analysis" / "timesteps.py")]
    result = subprocess.run([*script, str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "checkpoint not found" in result.stderr
    assert exit_code(main, [str(tmp_path / "none.pt"), "--T", "0"]) == 2


def test_amp_and_channels_last_train_on_cpu(tmp_path):
    argv = [
        "--method",
        "sdt",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--quiet",
        "--amp",
        "--channels-last",
        "--no-eval-train",
        "--out",
        str(tmp_path),
    ]
    assert train(argv) == 0

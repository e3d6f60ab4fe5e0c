"""analysis/connect.py on two tiny trained checkpoints: files, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from analysis.connect import main
from analysis.connectivity.connection import ConnectSettings, connect
from analysis.measures.inputs import Datasets, DataSettings, Evaluation, load_input
from tests.conftest import REPO
from tests.helpers import exit_code, save_mlp
from training.data.datasets import TensorLoader
from training.run import main as train
from training.runs import checkpoint as checkpoints
from training.runs.epoch import evaluate

SCRIPT = [sys.executable, str(REPO / "analysis" / "connect.py")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    argv = ["--epochs", "1", "--steps-per-epoch", "3", "--T", "2", "--quiet"]
    argv += ["--no-gradient-stats", "--seeds", "0", "1", "--out", str(out)]
    assert train(argv) == 0
    return [out / f"digits-digits_snn-T2-sdt-seed{s}" / "last.pt" for s in (0, 1)]


def test_help_lists_defaults():
    result = subprocess.run([*SCRIPT, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "(default:" in result.stdout and "--align" in result.stdout


def test_subprocess_writes_barriers_profiles_and_figure(runs, tmp_path):
    out = tmp_path / "ab"
    command = [*SCRIPT, *map(str, runs), "--dry-run", "--quiet", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "barrier of L_SDT" in result.stdout
    barriers = pd.read_csv(out / "connect_barriers.csv")
    assert len(barriers) == 2 * 3 * 2 * 2 * 3  # aligned x path x bn x spikes x metric
    assert (barriers.barrier.dropna() >= 0).all()
    profile = pd.read_csv(out / "connect_profile.csv")
    assert sorted(set(profile.t)) == [0.0, 0.5, 1.0]
    record = json.loads((out / "connect.json").read_text())
    assert record["kind"] == "connect" and record["alignment"]["converged"]
    assert record["curve_config"]["seed"] == 0 and len(record["fits"]) == 4
    assert (out / "connect.png").exists() and (out / "connect.pdf").exists()
    assert not (out / "connect_parts").exists()
    # The start of every path, BN as stored and hard spikes, is checkpoint A's own evaluation.
    start = profile[(profile.t == 0) & (profile.bn == "interpolated") & (profile.spikes == "hard")]
    input = load_input(checkpoints.read(runs[0]), DataSettings().dry_run().spec())
    with torch.no_grad():
        found = evaluate(input.model, input.loader, 0.05, 1.0)
    assert start.l_sdt.to_numpy() == pytest.approx(found["l_sdt"], rel=1e-6)
    assert start.acc.to_numpy() == pytest.approx(found["acc"], abs=1e-12)


def _connect_bezier(runs, parts) -> dict:
    """connect() of the dry-run Bezier fit without alignment (what BEZIER asks of the command),
    its parts in ``parts``."""
    settings = ConnectSettings(curves=("bezier",), align=False).dry_run()
    data = DataSettings().dry_run()
    a, b = checkpoints.read(runs[0]), checkpoints.read(runs[1])
    return connect(
        load_input(a, data.spec()),
        b,
        settings,
        Evaluation(quiet=True),
        Datasets(),
        parts,
        data.spec(),
    )


BEZIER = ["--dry-run", "--quiet", "--curves", "bezier", "--no-align"]


def test_a_killed_run_resumes_from_its_parts(runs, tmp_path):
    parts = tmp_path / "resumed" / "connect_parts"
    first = _connect_bezier(runs, parts)
    assert (parts / "fit_plain_bezier.pt").exists()
    torch.load(parts / "fit_plain_bezier.pt", weights_only=True)  # plain tensors and types
    argv = [*map(str, runs), *BEZIER]
    assert main([*argv, "--out", str(tmp_path / "resumed")]) == 0
    record = json.loads((tmp_path / "resumed" / "connect.json").read_text())
    assert record["fits"][0]["epochs_resumed"] == 1
    again = pd.read_csv(tmp_path / "resumed" / "connect_barriers.csv")
    expected = pd.DataFrame(first["barriers"])
    assert again.barrier.to_numpy() == pytest.approx(expected.barrier.to_numpy(), rel=1e-9)


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    mlp = save_mlp(tmp_path / "mlp.pt")
    cases = [
        ([str(runs[0]), str(runs[0])], "same checkpoint"),
        ([str(runs[0]), str(mlp)], "one architecture"),
        ([str(runs[0]), str(tmp_path / "none.pt")], "not found"),
        ([str(runs[0])], "arguments"),
        ([*map(str, runs), "--num-points", "2"], "--num-points"),
    ]
    for argv, message in cases:
        code = exit_code(main, [*argv, "--dry-run", "--quiet", "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1], (argv, err)
    command = [*SCRIPT, str(runs[0]), str(runs[0]), "--out", str(tmp_path / "y")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_spike_gap_command_and_measure(runs, tmp_path, capsys):
    from analysis.spike_gap import main as spike_gap

    argv = [*map(str, runs), "--dry-run", "--quiet", "--dtype", "float64", "--out", str(tmp_path)]
    assert spike_gap(argv) == 0
    table = pd.read_csv(tmp_path / "spike_gap.csv")
    assert len(table) == 2 and (table.surrogate == "triangle").all()
    input = load_input(checkpoints.read(runs[0]), DataSettings().dry_run().spec())
    loader = TensorLoader(input.loader.x.double(), input.loader.y, 256)
    with torch.no_grad():
        found = evaluate(input.model.double(), loader, 0.05, 1.0)
    assert table.acc_hard[0] == pytest.approx(found["acc"], abs=1e-12)
    assert table.l_sdt_hard[0] == pytest.approx(found["l_sdt"], rel=1e-12)
    gap = table.l_sdt_smooth - table.l_sdt_hard
    assert table.gap_l_sdt.to_numpy() == pytest.approx(gap.to_numpy(), rel=1e-12)
    # A narrow triangle is the hard step again.
    assert spike_gap([*argv, "--alpha", "1e-9", "--overwrite"]) == 0
    sharp = pd.read_csv(tmp_path / "spike_gap.csv")
    assert sharp.gap_acc.abs().max() == 0 and sharp.gap_l_sdt.abs().max() < 1e-9
    assert "acc hard" in capsys.readouterr().out


def test_parts_of_a_killed_run_with_other_settings_are_refused(runs, tmp_path, capsys):
    _connect_bezier(runs, tmp_path / "connect_parts")
    argv = [*map(str, runs), *BEZIER]
    code = exit_code(main, [*argv, "--seed", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--overwrite" in err[-1] and len(err) == 1

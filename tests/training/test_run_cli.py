"""The training CLI end to end: outputs, resume after SIGKILL, divergence and bad input."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.conftest import REPO
from training.run import main
from training.runs import checkpoint, trainer
from training.runs.config import TrainConfig

RUN = [sys.executable, str(REPO / "training" / "run.py")]
FAST = ["--epochs", "2", "--quiet", "--no-eval-train"]


def _state(path):
    return torch.load(path, weights_only=True)["model"]["state_dict"]


def test_default_cli_trains_sdt_and_tet_and_prints_table(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--save-every", "1", *FAST]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["method", "seed", "train", "acc", "test", "acc", "L_SDT", "L_TET"]
    assert [line.split()[0] for line in table[1:]] == ["SDT", "TET"]
    run = tmp_path / "digits-digits_snn-T4-tet-seed0"
    expected = {
        "config.json",
        "metrics.csv",
        "last.pt",
        "epoch_000.pt",
        "epoch_001.pt",
        "epoch_002.pt",
    }
    assert {p.name for p in run.iterdir()} >= expected
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.epoch) == [1, 2]
    assert {"test_l_sdt", "test_l_tet", "firing_rate", "train_acc"} <= set(metrics.columns)
    read = checkpoint.read(run / "last.pt")
    assert read.config.method == "tet" and read.input_shape == (1, 8, 8) and read.num_classes == 10
    stored = json.loads((run / "config.json").read_text())
    assert stored == read.raw["config"] and TrainConfig.from_stored(stored) == read.config


def test_training_is_deterministic_and_seeds_differ(tmp_path):
    args = ["--method", "sdt", *FAST, "--epochs", "1"]
    main(["--out", str(tmp_path / "a"), "--seeds", "0", "1", *args])
    main(["--out", str(tmp_path / "b"), "--seeds", "0", *args])
    a0, a1, b0 = (
        _state(tmp_path / d / f"digits-digits_snn-T4-sdt-seed{s}" / "last.pt")
        for d, s in (("a", 0), ("a", 1), ("b", 0))
    )
    assert all(torch.equal(a0[k], b0[k]) for k in a0)
    assert not torch.equal(a0["classifier.1.weight"], a1["classifier.1.weight"])


def test_config_file_sets_defaults_and_flags_override(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"T": 2, "epochs": 1, "tet_lambda": 0.2}))
    assert (
        main(
            ["--config", str(cfg), "--T", "3", "--method", "tet", "--out", str(tmp_path), "--quiet"]
        )
        == 0
    )
    config = json.loads((tmp_path / "digits-digits_snn-T3-tet-seed0" / "config.json").read_text())
    assert config["T"] == 3 and config["tet_lambda"] == 0.2 and config["epochs"] == 1


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    args = ["--method", "tet", "--epochs", "6", "--quiet", "--save-every", "2"]
    reference = subprocess.run([*RUN, *args, "--out", str(tmp_path / "ref")], capture_output=True)
    assert reference.returncode == 0, reference.stderr
    run = tmp_path / "killed" / "digits-digits_snn-T4-tet-seed0"
    process = subprocess.Popen(
        [*RUN, *args, "--out", str(tmp_path / "killed")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "epoch_002.pt").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside epoch 3 or its checkpoint write
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert trainer.run_status(run)[0] < 6, "the run finished before it was killed"
    resumed = subprocess.run(
        [*RUN, *args, "--out", str(tmp_path / "killed"), "--resume"], capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr
    expected = _state(tmp_path / "ref" / run.name / "last.pt")
    actual = _state(run / "last.pt")
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert (tmp_path / "ref" / run.name / "metrics.csv").read_text().count("\n") == 7
    stats = [(d / "gradient_stats.csv").read_text() for d in (tmp_path / "ref" / run.name, run)]
    assert stats[0] == stats[1]  # including the update cosine across the resume
    assert not list(run.glob(".*.tmp"))


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    args = ["--method", "sdt", "--out", str(tmp_path), *FAST, "--epochs", "1"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already holds a run; pass --resume or --overwrite" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "complete (1 epochs), skipped" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = trainer.get_loss, [0]

    def poisoned(method, lamb, phi):
        loss = real(method, lamb, phi)

        def wrapped(outputs, labels):
            calls[0] += 1
            value = loss(outputs, labels)
            return value * float("nan") if calls[0] == 30 else value  # inside epoch 2

        return wrapped

    monkeypatch.setattr(trainer, "get_loss", poisoned)
    assert main(["--method", "tet", "--out", str(tmp_path), "--quiet", "--epochs", "3"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss became nan at epoch 2, step 8" in err[0]
    assert "last good checkpoint:" in err[0] and "(epoch 1)" in err[0]
    assert trainer.run_status(tmp_path / "digits-digits_snn-T4-tet-seed0") == (1, 3)


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["--model", "resnet1000"], 2, "unknown model 'resnet1000'; known models:"),
        (
            ["--dataset", "cifar10", "--data-root", "nowhere", "--model", "spiking_mlp"],
            2,
            "CIFAR-10 files missing under nowhere/cifar-10-batches-py",
        ),
        (["--config", "missing.json"], 2, "cannot read config file missing.json"),
        (["--T", "0"], 2, "T must be in [1, 1000], got 0"),
        (["--method", "tet", "--width", "0.5"], 2, "has no width option"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(tmp_path, argv, code, message):
    command = [*RUN, *argv, "--out", str(tmp_path), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not list(tmp_path.rglob("last.pt"))


def test_help_lists_flags_with_defaults():
    result = subprocess.run([*RUN, "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert (
        "--tet-lambda" in result.stdout
        and "(default: 0.05)" in result.stdout
        and "--seeds" in result.stdout
    )


def test_logged_gradient_statistics_equal_post_hoc_ones(tmp_path):
    import pandas as pd

    from analysis.measures.inputs import Evaluation, load_input
    from analysis.measures.momentum import MomentumSettings, data_spec
    from analysis.measures.registry import get

    assert main(["--method", "tet", "--out", str(tmp_path), "--save-every", "1", *FAST]) == 0
    run = tmp_path / "digits-digits_snn-T4-tet-seed0"
    logged = pd.read_csv(run / "gradient_stats.csv", keep_default_na=False)
    logged = logged[logged.epoch == 2].reset_index(drop=True)
    found, settings = checkpoint.read(run / "epoch_002.pt"), MomentumSettings()
    input = load_input(found, data_spec(found, settings))
    rows = get("gradient_momentum").compute(input, settings, Evaluation()).rows
    post_hoc = pd.DataFrame(rows)
    for frame in (logged, post_hoc):
        frame[["t", "s"]] = frame[["t", "s"]].astype(str)
    merged = logged.merge(post_hoc, on=["quantity", "loss", "t", "s", "layer"], suffixes=("", "_p"))
    assert len(merged) == len(post_hoc) > 50
    assert (merged.value.astype(float) - merged.value_p).abs().max() < 1e-6
    metrics = pd.read_csv(run / "metrics.csv")
    assert {"grad_norm_sdt", "grad_norm_tet", "momentum_norm", "update_cos"} <= set(metrics.columns)


def test_training_stops_at_the_train_loss_criterion_and_stays_complete(tmp_path, capsys):
    args = ["--method", "sdt", "--out", str(tmp_path), "--quiet", "--epochs", "3"]
    assert main([*args, "--stop-at-train-loss", "50"]) == 0  # met after the first epoch
    run = tmp_path / "digits-digits_snn-T4-sdt-seed0"
    assert len(pd.read_csv(run / "metrics.csv")) == 1
    raw = torch.load(run / "last.pt", weights_only=True)
    assert raw["epoch"] == 1 and raw["stopped"] is True
    assert trainer.run_status(run) == (1, 1)
    capsys.readouterr()
    assert main([*args, "--stop-at-train-loss", "50", "--resume"]) == 0
    assert "complete (1 epochs), skipped" in capsys.readouterr().err
    other = tmp_path / "other"
    assert main(["--method", "sdt", "--out", str(other), *FAST]) == 0
    assert len(pd.read_csv(other / run.name / "metrics.csv")) == 2  # 0: off
    assert main([*args, "--stop-at-train-loss", "1", "--no-eval-train", "--overwrite"]) == 2


def test_the_test_split_is_evaluated_every_test_every_epochs_and_after_the_last(tmp_path):
    argv = ["--method", "tet", "--out", str(tmp_path), *FAST, "--epochs", "3"]
    assert main([*argv, "--test-every", "2"]) == 0
    metrics = pd.read_csv(tmp_path / "digits-digits_snn-T4-tet-seed0" / "metrics.csv")
    assert metrics.test_acc.isna().tolist() == [True, False, False]
    assert metrics.firing_rate.notna().tolist() == [False, True, True]

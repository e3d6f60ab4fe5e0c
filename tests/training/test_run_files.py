"""Runs that never lie: completeness, repair on --resume, refused config changes, --overwrite of a
corrupt run, the writer's lock, stale temp files, byte-identical checkpoints, Ctrl-C, progress
lines and TensorBoard."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import REPO
from training.run import main

RUN = [sys.executable, str(REPO / "training" / "run.py")]
TINY = ["--method", "tet", "--epochs", "2", "--steps-per-epoch", "2", "--no-eval-train", "--quiet"]
NAME = "digits-digits_snn-T4-tet-seed0"


def _files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.name != "metrics.csv"}


def _same_content(run, reference):
    """Same files; checkpoints equal in content (a repaired run may pickle them in another
    order, so their bytes can differ)."""
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.glob("*.pt"):
        _assert_equal(
            torch.load(path, weights_only=True),
            torch.load(run / path.name, weights_only=True),
            path.name,
        )
    for name in ("config.json", "gradient_stats.csv"):
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name


def _assert_equal(x, y, where):
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for key in x:
            _assert_equal(x[key], y[key], f"{where}/{key}")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal(u, v, f"{where}[{i}]")
    elif isinstance(x, torch.Tensor):
        assert torch.equal(x, y), where
    else:
        assert x == y or (x != x and y != y), where


def _metrics(run):
    """metrics.csv without its wall-clock column."""
    lines = (run / "metrics.csv").read_text().splitlines()
    return [line.rsplit(",", 1)[0] for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out, threads = tmp_path_factory.mktemp("reference"), torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests run (conftest): reductions depend on the threads
    try:
        assert main([*TINY, "--save-every", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return out / NAME


def test_same_seed_gives_byte_identical_files(reference, tmp_path):
    assert main([*TINY, "--save-every", "1", "--out", str(tmp_path)]) == 0
    run = tmp_path / NAME
    assert [k for k, v in _files(run).items() if _files(reference).get(k) != v] == []
    assert {"last.pt", "epoch_000.pt", "epoch_002.pt", "gradient_stats.csv"} <= set(_files(run))
    assert _metrics(run) == _metrics(reference)
    rng = torch.load(run / "last.pt", weights_only=True)["rng"]
    assert rng["torch_seed"] == 0 and "created" not in torch.load(run / "last.pt")["provenance"]


LOST = [
    ["epoch_002.pt", "row"],
    ["row"],
    ["gradient_stats.csv"],
    ["epoch_001.pt"],
    ["last.pt"],
    ["config.json", "row"],
]


@pytest.mark.parametrize("lost", LOST)
def test_resume_finishes_a_run_with_missing_pieces(reference, tmp_path, lost, capsys):
    """A kill after last.pt but before the snapshot or the metrics row (old commit order), or
    files deleted by hand: --resume recreates them, identical to an uninterrupted run."""
    args = [*TINY, "--save-every", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    run = tmp_path / NAME
    for name in lost:
        if name == "row":
            lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
            (run / "metrics.csv").write_text("".join(lines[:-1]))
        else:
            (run / name).unlink()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    _same_content(run, reference)
    assert _metrics(run) == _metrics(reference)
    assert not list(run.glob(".*"))


def test_resume_refuses_a_changed_config_in_one_line(reference, tmp_path, capsys):
    args = [*TINY, "--out", str(tmp_path)]
    assert main(args) == 0
    capsys.readouterr()
    for change, words in ((["--epochs", "4"], "epochs: 2 -> 4"), (["--lr", "0.01"], "lr: 0.005")):
        assert main([*args, *change, "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "trained with another config" in err[0] and words in err[0], err


def test_resume_on_last_pt_of_another_model_or_T(tmp_path, capsys):
    assert main([*TINY, "--T", "2", "--out", str(tmp_path)]) == 0
    other = tmp_path / "digits-digits_snn-T2-tet-seed0" / "last.pt"
    run = tmp_path / NAME
    run.mkdir()
    (run / "last.pt").write_bytes(other.read_bytes())
    capsys.readouterr()
    assert main([*TINY, "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "T: 2 -> 4" in err[0], err


def test_resume_and_overwrite_replace_a_corrupt_run(tmp_path, capsys):
    args = [*TINY, "--out", str(tmp_path)]
    assert main(args) == 0
    run = tmp_path / NAME
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    assert main([*args, "--resume"]) == 0  # a last.pt that does not load counts as missing
    assert "last.pt does not load; resuming recreates it" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == data  # deterministic: the same bytes again
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    (run / "epoch_007.pt").write_bytes(b"old")
    assert main([*args, "--overwrite"]) == 0
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert not (run / "epoch_007.pt").exists()


def test_lock_refuses_a_second_writer_and_stale_locks_and_temp_files_go(tmp_path, capsys):
    run = tmp_path / NAME
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()} {os.uname().nodename}\n")
    assert main([*TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is being written by process {os.getpid()}" in err[0], err
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (run / ".lock").write_text(f"{dead} {os.uname().nodename}\n")
    (run / ".last.pt.abc123.tmp").write_bytes(b"partial")
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    assert not (run / ".lock").exists() and not list(run.glob(".*.tmp"))


def test_run_accepts_its_own_config_file(reference, tmp_path):
    config = reference / "config.json"
    assert main(["--config", str(config), "--out", str(tmp_path), "--quiet"]) == 0
    assert (
        _files(tmp_path / NAME)
        == {k: v for k, v in _files(reference).items() if not k.startswith("epoch_")}
        or (tmp_path / NAME / "last.pt").exists()
    )


def test_plain_epoch_lines_when_stderr_is_not_a_terminal(tmp_path):
    command = [*RUN, *TINY[:-1], "--out", str(tmp_path), "--no-gradient-stats"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], result.stderr
    assert "\r" not in result.stderr and " test " in lines[0] and lines[0].endswith(" s")


def test_ctrl_c_prints_one_line_and_leaves_a_resumable_run(tmp_path):
    # 6 epochs: the interrupt after the first leaves 5 to go, so a loaded machine still lands it
    args = ["--method", "tet", "--epochs", "6", "--quiet", "--out", str(tmp_path)]
    # a user's shell delivers Ctrl-C to a process whose SIGINT is at its default, whatever this
    # test process inherited (an ignored SIGINT would be inherited by the child)
    reset = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen([*RUN, *args], stderr=subprocess.PIPE, text=True, preexec_fn=reset)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / NAME / "last.pt").exists():
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip(f"the run finished before the interrupt (SIGINT here: {signal.getsignal(2)})")
    assert process.returncode == 130 and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err and not (tmp_path / NAME / ".lock").exists()
    assert main([*args, "--resume"]) == 0
    assert torch.load(tmp_path / NAME / "last.pt", weights_only=True)["epoch"] == 6


def test_tensorboard_logs_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    board = tmp_path / "tb"
    assert main([*TINY, "--out", str(tmp_path), "--tensorboard", str(board)]) == 0
    events = list((board / NAME).glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(board / NAME)).Reload().Tags()["scalars"]
    assert {
        "loss/test_l_tet",
        "loss/train_l_sdt",
        "accuracy/test_acc",
        "spikes/firing_rate",
        "gradient/grad_norm_tet",
    } <= set(tags)


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch, capsys):
    # SLURM kills every process of a job before it requeues it, maybe onto another node: a lock
    # written under the same SLURM job id is its earlier run's, whatever host it names.
    run = tmp_path / NAME
    run.mkdir()
    (run / ".lock").write_text(f"{os.getpid()} other-node 4242_7\n")
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    assert main([*TINY, "--out", str(tmp_path)]) == 2  # another job's: refused
    assert "is being written by process" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_JOB_ID", "4242_7")
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    assert not (run / ".lock").exists()

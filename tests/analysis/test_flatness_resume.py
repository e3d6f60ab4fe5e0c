"""analysis/flatness.py SIGKILLed between checkpoints and started again reuses the checkpoints it
measured (same bytes, settings, data, device), and only those: the result equals an uninterrupted
run's (but for the seconds)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import REPO

FLATNESS = [sys.executable, str(REPO / "analysis" / "flatness.py")]
TRAIN = [sys.executable, str(REPO / "training" / "run.py")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    args = ["--epochs", "1", "--steps-per-epoch", "2", "--no-eval-train", "--quiet"]
    subprocess.run([*TRAIN, *args, "--seeds", "0", "1", "--out", str(root)], check=True)
    paths = sorted(str(p) for p in root.glob("*/last.pt"))
    assert len(paths) == 4
    return paths


def _killed_after(out, checkpoints, done: int, extra=()) -> None:
    """Start flatness of the checkpoints; SIGKILL it once ``done`` of them were kept."""
    process = subprocess.Popen(
        [*FLATNESS, *checkpoints, "--out", str(out), "--dry-run", "--quiet", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / ".partial" / f"{done - 1:04d}.pt").exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "flatness.csv").exists(), "it finished before it was killed"


def _run(out, checkpoints, *extra) -> str:
    result = subprocess.run(
        [*FLATNESS, *checkpoints, "--out", str(out), "--dry-run", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.slow
def test_killed_flatness_resumes_from_its_checkpoints(tmp_path, checkpoints):
    _run(tmp_path / "reference", checkpoints)
    reference = pd.read_csv(tmp_path / "reference" / "flatness.csv")

    other = tmp_path / "other"  # kept under other settings: not reused
    _killed_after(other, checkpoints, 1, ("--probe-seed", "7"))
    assert "reused" not in _run(other, checkpoints)

    killed = tmp_path / "killed"
    _killed_after(killed, checkpoints, 2)
    log = _run(killed, checkpoints, "--overwrite")
    assert log.count("measured before, reused") >= 2
    resumed = pd.read_csv(killed / "flatness.csv")
    for frame in (resumed, pd.read_csv(other / "flatness.csv")):
        pd.testing.assert_frame_equal(
            frame.drop(columns="seconds"), reference.drop(columns="seconds")
        )
    assert not (killed / ".partial").exists()

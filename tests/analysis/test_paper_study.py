"""The paper-scale study's chain, tiny and end to end through the local launcher: synthetic files
in the real CIFAR-10 batch format, the cifar10-resnet19 preset at width 1/16, T = 2, 1 epoch,
2 pairs, flatness, STUDY.md; and the study command's launcher errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from analysis.evidence.study_design import BENCHMARKS, SCALES, gpu_hours
from benchmarks.paper_study import run, write_synthetic_cifar10
from tests.conftest import REPO
from training.data.datasets import load_cifar

STUDY = [sys.executable, str(REPO / "analysis" / "study.py")]


def test_synthetic_files_are_read_as_cifar10(tmp_path):
    write_synthetic_cifar10(tmp_path, images_per_file=3)
    data = load_cifar(tmp_path, 10)
    assert data.x_train.shape == (15, 3, 32, 32) and data.x_test.shape == (3, 3, 32, 32)


@pytest.mark.slow
def test_tiny_paper_study_end_to_end(tmp_path):
    seconds = run(tmp_path, images_per_file=16)
    figures, runs = tmp_path / "figures", tmp_path / "runs"
    study = (figures / "STUDY.md").read_text()
    assert "Paired claims: cifar10-resnet19" in study and "Scale `paper-tiny`" in study
    table = pd.read_csv(figures / "study_runs.csv")
    assert sorted(table.run.str.split("/").str[0].unique()) == ["cifar10-resnet19"]
    assert len(table.drop_duplicates("run")) == 4  # 2 pairs x SDT, TET
    config = json.loads(
        next((runs / "cifar10-resnet19").glob("*tet-seed1/config.json")).read_text()
    )
    assert config["model"] == "resnet19" and config["width"] == 0.0625 and config["T"] == 2
    assert config["dataset"] == "cifar10" and config["eval_train"] and config["epochs"] == 1
    paired = pd.read_csv(figures / "study_paired.csv")
    assert {"test_acc", "acc_gap", "normalized_lambda_max/l_sdt"} <= set(paired.metric)
    assert sorted(p.name for p in (runs / "logs").iterdir()) == [
        f"{kind}_cifar10-resnet19_{method}pair_{pair}.log"
        for kind, method, pair in [
            ("flatness", "", 0),
            ("flatness", "", 1),
            ("train", "sdt_", 0),
            ("train", "sdt_", 1),
            ("train", "tet_", 0),
            ("train", "tet_", 1),
        ]
    ]
    assert seconds["study"] > 0
    # everything exists: running again submits nothing and rewrites the report only
    again = subprocess.run(
        [*STUDY, "--scale", "paper-tiny", "--runs", str(runs), "--figures", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "train cifar10" not in again.stderr and "flatness cifar10" not in again.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--launcher", "slurm"], "--launcher slurm needs SLURM's srun and sbatch on PATH"),
        (["--benchmark", "cifar7"], "argument --benchmark: invalid choice: 'cifar7'"),
        (["--array-parallelism", "0"], "--array-parallelism must be >= 1"),
        (
            ["--benchmark", "imagenet-sew-resnet34"],
            "--benchmark imagenet-sew-resnet34 cannot run yet: ImageNet is streamed from disk",
        ),
    ],
)
def test_study_launcher_errors_are_one_line(tmp_path, argv, message):
    env = {"PATH": "/usr/bin:/bin"}  # no srun
    result = subprocess.run(
        [*STUDY, "--scale", "paper-tiny", "--runs", str(tmp_path / "r"), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_paper_cost_is_unmeasured_until_a_gpu_measured_it():
    cost = gpu_hours(BENCHMARKS["cifar10-resnet19"])
    assert cost["gpu_hours"] is None and cost["runs"] == 20 and cost["epochs"] == 300
    assert cost["formula"] == "20 runs x 300 epochs x seconds_per_epoch x 1 GPU / 3600"
    from dataclasses import replace

    measured = replace(BENCHMARKS["imagenet-sew-resnet34"], seconds_per_epoch=1800.0)
    assert gpu_hours(measured)["gpu_hours"] == pytest.approx(12 * 120 * 1800 * 8 / 3600)
    assert SCALES["paper-tiny"].pairs == {"cifar10-resnet19": 2}


def test_plan_prints_each_benchmark_and_its_cost(tmp_path):
    result = subprocess.run(
        [*STUDY, "--scale", "paper", "--plan", "--runs", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == list(SCALES["paper"].pairs)
    assert "20 runs of 300 epochs (1 GPU, 8 CPUs, 32 GB, 24 h per allocation)" in lines[0]
    assert "unmeasured: 20 runs x 300 epochs x seconds_per_epoch x 1 GPU / 3600" in lines[0]
    assert not (tmp_path / "r").exists()  # a plan writes nothing

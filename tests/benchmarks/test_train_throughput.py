"""Smoke tests of the throughput benchmark, its official-style baseline and the GPU check script."""

import importlib
import re
import shlex
import subprocess
import sys

import pytest
import torch

from benchmarks import train_throughput as bench
from benchmarks.official_style import LIFSpike
from tests.conftest import REPO
from training.snn.neurons import lif_multistep

RATIO = re.compile(r"throughput ratio \(ours/official-style\): (\d+\.\d\d)\n$")


def test_dry_run_checks_equivalence_and_ends_with_the_ratio(capsys):
    assert bench.main(["--dry-run", "--device", "cpu", "--channels-last"]) == 0
    out = capsys.readouterr().out
    assert "same loss, gradients and BN statistics in float64" in out
    assert float(RATIO.search(out).group(1)) > 0


def test_only_ours_with_bf16_and_channels_last(capsys):
    argv = ["--dry-run", "--device", "cpu", "--only", "ours", "--bf16", "--channels-last"]
    argv += ["--no-check", "--no-fused-lif", "--no-static-stem", "--clock", "process"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"ours: +\d+\.\d images/s", out) and "throughput ratio" not in out


def test_check_fails_when_weights_differ():
    ours, official = bench.build_models(1 / 16, 2, 10, seed=0)
    x, y = bench.random_batches(1, 2, 8, 10, seed=0)[0]
    assert bench.check_same_step(ours, official, x, y) < 1e-12
    with torch.no_grad():
        official.layer2[0].conv2.weight.mul_(1.1)
    with pytest.raises(RuntimeError, match="ours and official-style differ"):
        bench.check_same_step(ours, official, x, y)


def test_official_lif_is_ours_in_batch_major_layout():
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    official = LIFSpike()(x.transpose(0, 1).requires_grad_())  # [B, T, ...]
    torch.testing.assert_close(official.transpose(0, 1), lif_multistep(x), rtol=0, atol=0)


def test_cli_errors_and_help():
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
    result = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--channels-last" in result.stdout and "(default: 0.25)" in result.stdout


def test_gpu_check_commands_parse_and_run_tiny_on_cpu(capsys):
    """Every command of gpu_check.sh parses with its module's parser; one runs here, tiny."""
    script = REPO / "benchmarks" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    printed = subprocess.run(
        ["bash", str(script), "--print"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    modules = [line.split()[0] for line in printed]
    assert (
        modules.count("train_throughput") == 5
        and sum("--compile" in line.split() for line in printed) == 2
    )
    assert {"hessian_batched", "surface_gpu"} <= set(modules)
    for line in printed:
        module, *argv = shlex.split(line)
        args = importlib.import_module(f"benchmarks.{module}").build_parser().parse_args(argv)
        assert args.device == "cuda"
        if module == "train_throughput":
            assert (args.width, args.batch_size, args.T) == (1.0, 128, 4)
    tiny = shlex.split(printed[1])[1:] + ["--dry-run", "--device", "cpu", "--threads", "1"]
    assert bench.main(tiny) == 0
    assert "bf16 True" in capsys.readouterr().out

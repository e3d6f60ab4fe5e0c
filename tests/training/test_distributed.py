"""torchrun with 2 gloo processes on CPU equals the single-process run."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import REPO
from training.data.datasets import TensorLoader, dataset_for
from training.runs import checkpoint
from training.runs.epoch import evaluate

ARGS = ["--method", "tet", "--epochs", "1", "--quiet", "--no-eval-train", "--out"]


def _run(out, model, nproc):
    launcher = [sys.executable, str(REPO / "training" / "run.py")]
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(REPO / "training" / "run.py"),
        ]
    result = subprocess.run(
        [*launcher, "--model", model, *ARGS, str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = out.iterdir()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("model", ["spiking_mlp", "digits_snn"])
def test_two_gloo_processes_match_one(tmp_path, model):
    single, double = _run(tmp_path / "one", model, 1), _run(tmp_path / "two", model, 2)
    a = torch.load(single / "last.pt", weights_only=True)["model"]["state_dict"]
    b = torch.load(double / "last.pt", weights_only=True)["model"]["state_dict"]
    if model == "spiking_mlp":  # no BatchNorm: identical up to the order of float reductions
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    else:  # per-rank BatchNorm statistics differ from whole-batch ones: close, not equal
        difference = sum((a[k].float() - b[k].float()).norm() for k in a if "weight" in k)
        assert difference / sum(a[k].float().norm() for k in a if "weight" in k) < 0.05
    metrics_a, metrics_b = pd.read_csv(single / "metrics.csv"), pd.read_csv(double / "metrics.csv")
    assert abs(metrics_a.test_acc.iloc[-1] - metrics_b.test_acc.iloc[-1]) < 0.03

    # The sharded, reduced test metrics of the 2-process run equal a plain single-process
    # evaluation of its weights: no sample counted twice, none dropped.
    model_b, config = checkpoint.load(double / "last.pt")
    data = dataset_for(config)
    plain = evaluate(model_b, TensorLoader(data.x_test, data.y_test, 256), 0.05, 1.0)
    assert metrics_b.test_acc.iloc[-1] == pytest.approx(plain["acc"], abs=1e-12)
    assert metrics_b.test_l_tet.iloc[-1] == pytest.approx(plain["l_tet"], rel=1e-5)

"""The Hessian CLI end to end on tiny checkpoints: files, values, flags and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from analysis.hessian import main
from tests.conftest import REPO
from tests.helpers import dense_hessian, exit_code, objective, save_mlp

FAST = ["--samples", "48", "--batch-size", "20", "--dtype", "float64", "--quiet"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return [
        save_mlp(root / "sdt" / "last.pt", "sdt", 0),
        save_mlp(root / "tet" / "last.pt", "tet", 1),
    ]


def test_writes_json_csv_density_and_table(checkpoints, tmp_path, capsys):
    args = "--top-k 2 --bottom-k 1 --num-matvecs 12 --density --density-steps 12"
    args = [*args.split(), "--density-repeats", "2", "--per-layer", "--tol", "1e-6"]
    assert main([*map(str, checkpoints), *FAST, *args, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["checkpoint", "loss", "lambda_max"]
    assert [line.split()[1] for line in table[1:3]] == ["SDT", "TET"]
    result = json.loads((tmp_path / "hessian.json").read_text())
    sdt, tet = result["results"]
    assert result["kind"] == "hessian_spectrum" and result["provenance"]["torch"]
    assert sdt["curvature"] == "autograd_surrogate_hessian" and sdt["loss"] == "sdt"
    assert tet["loss"].startswith("tet(lambda=0.05")
    assert len(sdt["checkpoint"]["sha256"]) == 64 and len(sdt["data"]["indices_sha256"]) == 64
    assert sdt["data"]["num_samples"] == 48 and sdt["dtype"] == "torch.float64"
    assert all(sdt["top"]["converged"]) and sdt["top"]["eigenvalues"][0] > 0
    assert set(sdt["per_layer"]) == {"layers.1.0", "layers.3.0"}
    assert sdt["num_matvecs"] >= sdt["top"]["num_matvecs"] + 12 + 24
    csv = pd.read_csv(tmp_path / "hessian.csv")
    assert list(csv.columns) == ["checkpoint", "quantity", "index", "value", "stderr", "loss"]
    assert set(csv.loss) == {"sdt", "tet(lambda=0.05, phi=1.0)"}
    assert {"top_eigenvalue", "bottom_eigenvalue", "trace", "loss"} <= set(csv.quantity)
    assert "layer/layers.1.0/top_eigenvalue" in set(csv.quantity)
    assert (tmp_path / "density.png").stat().st_size > 0
    assert (tmp_path / "hessian.npz").exists() and not list(tmp_path.glob(".*.tmp"))


def test_eigenvalues_match_the_dense_hessian(checkpoints, tmp_path):
    assert (
        main(
            [
                str(checkpoints[0]),
                *FAST,
                "--top-k",
                "3",
                "--tol",
                "1e-6",
                "--trace",
                "none",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    top = json.loads((tmp_path / "hessian.json").read_text())["results"][0]["top"]["eigenvalues"]
    dense = dense_hessian(objective(checkpoints[0], samples=48))
    exact = torch.linalg.eigvalsh((dense + dense.T) / 2).flip(0)[:3]
    torch.testing.assert_close(torch.tensor(top, dtype=torch.float64), exact, rtol=1e-6, atol=0)


def test_batch_size_does_not_change_results(checkpoints, tmp_path):
    values = []
    for batch_size in ("7", "48"):
        out = tmp_path / batch_size
        args = [*FAST, "--batch-size", batch_size, "--top-k", "1", "--trace", "none"]
        assert main([str(checkpoints[1]), *args, "--tol", "1e-8", "--out", str(out)]) == 0
        record = json.loads((out / "hessian.json").read_text())["results"][0]
        values.append((record["loss_value"], record["top"]["eigenvalues"][0]))
    assert values[0] == pytest.approx(values[1], rel=1e-10)


def test_time_step_and_sg_jacobian(checkpoints, tmp_path):
    out = tmp_path / "t1"
    assert (
        main(
            [
                str(checkpoints[0]),
                *FAST,
                "--time-step",
                "1",
                "--top-k",
                "1",
                "--num-matvecs",
                "6",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "hessian.json").read_text())["results"][0]["loss"] == "ce_t1"
    out = tmp_path / "sg"
    assert (
        main(
            [
                str(checkpoints[0]),
                *FAST,
                "--operator",
                "sg-jacobian",
                "--num-matvecs",
                "6",
                "--asymmetry-probes",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "hessian.json").read_text())["results"][0]
    assert record["curvature"] == "sg_field_jacobian_fd" and record["asymmetry"]["relative"] > 0
    assert "top" not in record and "trace" in record


def test_dry_run_and_default_output_folder(checkpoints):
    assert main([str(checkpoints[0]), "--dry-run", "--quiet", "--overwrite"]) == 0
    assert (checkpoints[0].parent / "analysis" / "hessian.json").exists()


def test_strict_fails_on_unconverged_eigenvalues(checkpoints, tmp_path, capsys):
    args = [*FAST, "--top-k", "2", "--max-steps", "2", "--tol", "1e-12", "--trace", "none"]
    with pytest.warns(RuntimeWarning, match="did not reach"):
        assert main([str(checkpoints[0]), *args, "--strict", "--out", str(tmp_path)]) == 1
    assert "did not converge" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--operator", "sg-jacobian", "--top-k", "2"], "is not symmetric"),
        (["--time-step", "2"], "--time-step must be in [0, T-1] = [0, 1], got 2"),
        (["--time-step", "0", "--loss", "tet"], "drop --loss tet"),
        (["--samples", "0"], "--samples must be >= 1, got 0"),
        (["--trace", "hutch++", "--num-matvecs", "3"], "--num-matvecs must be >= 4"),
        (["--top-k", "-1"], "--top-k must be >= 0, got -1"),
        (["--top-k", "999"], "exceed the 310 parameters"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--top-k", "-1"], "cuda"),
    ],
)
def test_bad_flags_exit_2_with_one_line(checkpoints, tmp_path, capsys, extra, message):
    code = exit_code(main, [str(checkpoints[0]), *FAST, *extra, "--out", str(tmp_path)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and message in error[0], error


def test_missing_checkpoint_and_existing_output(checkpoints, tmp_path, capsys):
    assert exit_code(main, [str(tmp_path / "nope.pt"), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err.splitlines()[-1]
    (tmp_path / "hessian.json").write_text("{}")
    assert exit_code(main, [str(checkpoints[0]), "--out", str(tmp_path)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code = exit_code(main, [str(tmp_path / "bad.pt"), "--out", str(tmp_path), "--overwrite"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert error[0].startswith("hessian.py: error: ") and "bad.pt" in error[0]


def test_help_in_a_subprocess():
    # Run as a file: sys.path[0] is analysis/, the case most likely to break imports.
    result = subprocess.run(
        [sys.executable, "analysis/hessian.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--top-k", "--trace", "--density", "--per-layer", "--time-step", "--dry-run"):
        assert flag in result.stdout
    assert "(default: 1024)" in result.stdout

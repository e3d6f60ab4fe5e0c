"""surface.py and sharpness.py end to end on tiny checkpoints: files, values, resume, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import sharpness, surface
from analysis.measures.inputs import sample_indices
from landscape.surface_io import load_surface, load_surface_frame
from tests.conftest import REPO
from tests.helpers import exit_code, save_mlp
from training.data.datasets import dataset_for
from training.runs import checkpoint
from training.snn.losses import loss_terms
from training.snn.smooth import smooth_model

FAST = ["--samples", "40", "--batch-size", "16", "--dtype", "float64", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    save_mlp(root / "sdt" / "last.pt", "sdt", 0, hidden=(8,), scale=3.0)
    save_mlp(root / "tet" / "last.pt", "tet", 1, hidden=(8,), scale=3.0)
    for epoch, scale in enumerate((1.0, 2.0, 2.5)):
        save_mlp(root / "sdt" / f"epoch_{epoch:03d}.pt", "sdt", epoch + 5, hidden=(8,), scale=scale)
    return root


def plain_losses(path, samples: int = 40, smooth: bool = False) -> dict[str, float]:
    """The checkpoint's L_SDT, L_TET and accuracy on the CLI's subset, straight from the model
    (with the surrogate's smooth step in place of the spike if ``smooth``)."""
    model, config = checkpoint.load(path)
    model = smooth_model(model) if smooth else model
    dataset = dataset_for(config)
    index = sample_indices(len(dataset.y_train), samples, 0)
    with torch.no_grad():
        outputs = model.double()(dataset.x_train[index].double())
    terms = loss_terms(outputs, dataset.y_train[index], 0.05, 1.0)
    return {
        "l_sdt": terms["l_sdt"].item(),
        "l_tet": terms["l_tet"].item(),
        "accuracy": terms["correct"].item() / samples,
    }


def test_help():
    for script in ("surface.py", "sharpness.py"):
        result = subprocess.run(
            [sys.executable, str(REPO / "analysis" / script), "--help"],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert result.returncode == 0 and "(default:" in result.stdout


def test_2d_surface_files_plots_and_centre(runs, tmp_path, capsys):
    ckpt = runs / "tet" / "last.pt"
    args = [str(ckpt), "--x", "-1:1:5", "--y", "-0.5:0.5:3", *FAST, "--out", str(tmp_path)]
    assert surface.main(args) == 0
    assert capsys.readouterr().out.startswith("centre: l_sdt=")
    stem = tmp_path / "surface_last_random_2d"
    result = load_surface(stem.with_suffix(".json"))
    assert result.values["l_sdt"].shape == (5, 3) and result.values["firing_rate"].shape == (5, 3)
    meta = result.metadata
    assert meta["checkpoint"]["sha256"] == checkpoint_sha(ckpt) and meta["provenance"]["torch"]
    assert meta["directions"]["normalization"] == "filter" and "cosine" in meta["directions"]
    assert meta["bn"]["mode"] == "eval" and meta["dtype"] == "float64" and meta["model"]["T"] == 2
    assert meta["run"]["input_layer"] == "layers.1.0" and meta["run"]["points_computed"] == 15
    centre = plain_losses(ckpt)
    for key, value in centre.items():
        assert result.values[key][2, 1] == pytest.approx(value, rel=1e-10)
    frame = load_surface_frame(stem.with_suffix(".npz"))
    assert {"x", "y", "metric", "value"} == set(frame.columns) and len(frame) % 15 == 0
    assert "direction1/layers.1.0.weight" in result.extras
    stats = pd.read_csv(tmp_path / "surface_last_random_2d_stats.csv")
    assert {"curvature", "basin_width_x", "flat_step_fraction"} <= set(stats.statistic)
    for kind in ("contour", "contourf", "heatmap", "surface3d"):
        for fmt in ("png", "pdf"):
            assert (tmp_path / f"surface_last_random_2d_{kind}.{fmt}").stat().st_size > 1000
    assert not (tmp_path / "surface_last_random_2d.parts").exists()
    assert exit_code(surface.main, args) == 2  # the result exists: keep it
    assert "--overwrite" in capsys.readouterr().err


def checkpoint_sha(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_interpolation_reproduces_both_checkpoints(runs, tmp_path):
    first, second = runs / "sdt" / "last.pt", runs / "tet" / "last.pt"
    flags = ["--dim", "1", "--directions", f"interp:{second}", "--x", "0:1:3", "--no-plots"]
    assert surface.main([str(first), *flags, *FAST, "--out", str(tmp_path)]) == 0
    values = load_surface(tmp_path / "surface_last_interp_1d.json").values
    for index, path in ((0, first), (2, second)):
        for key, value in plain_losses(path).items():
            assert values[key][index] == pytest.approx(value, rel=1e-10), (path, key)


def test_smooth_spikes_slice_is_the_surrogate_forward_along_the_path(runs, tmp_path):
    first, second = runs / "sdt" / "last.pt", runs / "tet" / "last.pt"
    flags = ["--dim", "1", "--directions", f"interp:{second}", "--x", "0:1:3", "--no-plots"]
    for spikes in ("hard", "smooth"):
        argv = [str(first), *flags, "--spikes", spikes, *FAST, "--out", str(tmp_path)]
        assert surface.main(argv) == 0
    hard = load_surface(tmp_path / "surface_last_interp_1d.json")
    smooth = load_surface(tmp_path / "surface_last_interp_1d_smooth.json")
    assert hard.metadata["spikes"] == "hard" and smooth.metadata["spikes"] == "smooth"
    for index, path in ((0, first), (2, second)):
        for key, value in plain_losses(path, smooth=True).items():
            assert smooth.values[key][index] == pytest.approx(value, rel=1e-10), (path, key)
    assert not np.allclose(hard.values["l_sdt"], smooth.values["l_sdt"])


def test_pca_trajectory_and_eigen_directions(runs, tmp_path):
    ckpt = runs / "sdt" / "last.pt"
    assert (
        surface.main(
            [
                str(ckpt),
                "--directions",
                f"pca:{runs / 'sdt'}",
                "--x",
                "-2:2:3",
                "--y",
                "-1:1:3",
                *FAST,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    pca = load_surface(tmp_path / "surface_last_pca_2d.json")
    assert pca.extras["trajectory"].shape == (3, 2)
    assert sum(pca.metadata["directions"]["explained_variance_ratio"]) == pytest.approx(1.0)
    assert (tmp_path / "surface_last_pca_2d_contour.png").exists()
    assert (
        surface.main(
            [
                str(ckpt),
                "--dim",
                "1",
                "--directions",
                "eigen",
                "--x",
                "-1:1:3",
                *FAST,
                "--out",
                str(tmp_path),
                "--no-plots",
            ]
        )
        == 0
    )
    eigen = load_surface(tmp_path / "surface_last_eigen_1d.json").metadata["directions"]
    assert eigen["curvature"] == "autograd_surrogate_hessian" and eigen["converged"] == [True]
    assert eigen["norms"] == pytest.approx([1.0], abs=1e-12)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--x", "1:-1:5"], "LOW < HIGH"),
        (["--directions", "sideways"], "--directions must be"),
        (["--dim", "2", "--directions", "interp:a.pt"], "needs 2 interp checkpoint"),
        (["--dim", "1", "--y", "-1:1:3"], "--y is only used"),
        (["--chunk-size", "0"], "--chunk-size must be >= 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(runs, flags, message, capsys):
    code = exit_code(surface.main, [str(runs / "sdt" / "last.pt"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1]


def test_unreadable_checkpoint_fails_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = exit_code(surface.main, [str(bad), "--dry-run", "--quiet", "--out", str(tmp_path)])
    assert code == 2  # a bad command line
    err = capsys.readouterr().err
    assert "error:" in err and err.strip().count("\n") == 0 and "bad.pt" in err


def _run(args: list[str], **kwargs) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "analysis" / "surface.py"), *args]
    return subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_resume_after_sigkill_gives_the_identical_surface(runs, tmp_path):
    ckpt = str(runs / "sdt" / "last.pt")
    args = [
        ckpt,
        "--x",
        "-1:1:41",
        "--y",
        "-1:1:31",
        "--samples",
        "64",
        "--chunk-size",
        "20",
        "--quiet",
        "--no-plots",
        "--out",
    ]
    parts = tmp_path / "killed" / "surface_last_random_2d.parts"
    process = _run([*args, str(tmp_path / "killed")])
    deadline = time.time() + 120
    while len(list(parts.glob("chunk_*.npz"))) < 3 and time.time() < deadline:
        assert process.poll() is None, f"finished before it could be killed: {process.stderr}"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(parts.glob("chunk_*.npz")))
    assert 3 <= done < 64, f"{done} chunks on disk when killed"
    resumed = _run([*args, str(tmp_path / "killed")])
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    run = json.loads((tmp_path / "killed" / "surface_last_random_2d.json").read_text())["run"]
    assert run["points_resumed"] == 20 * done and run["points_computed"] == 41 * 31 - 20 * done
    # One thread here (tests/conftest.py) and there (OMP_NUM_THREADS=1): bit-identical values.
    assert surface.main([*args, str(tmp_path / "whole")]) == 0
    killed = load_surface(tmp_path / "killed" / "surface_last_random_2d.npz").values
    reference = load_surface(tmp_path / "whole" / "surface_last_random_2d.npz").values
    assert all(np.array_equal(killed[k], reference[k]) for k in reference)


def test_torchrun_two_processes_equal_one(runs, tmp_path):
    ckpt = str(runs / "tet" / "last.pt")
    args = [ckpt, "--x", "-1:1:7", "--y", "-1:1:4", *FAST, "--chunk-size", "3", "--no-plots"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "analysis" / "surface.py"),
        *args,
        "--out",
        str(tmp_path / "two"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert surface.main([*args, "--out", str(tmp_path / "one")]) == 0
    two = load_surface(tmp_path / "two" / "surface_last_random_2d.json")
    one = load_surface(tmp_path / "one" / "surface_last_random_2d.json")
    assert two.metadata["run"]["world_size"] == 2
    assert all(np.array_equal(one.values[k], two.values[k]) for k in one.values)


def test_sharpness_cli(runs, tmp_path, capsys):
    ckpt = str(runs / "sdt" / "last.pt")
    assert (
        sharpness.main(
            [
                ckpt,
                *FAST,
                "--draws",
                "3",
                "--radius",
                "0.1",
                "--epsilon",
                "1e-3",
                "--epsilon-steps",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = pd.read_csv(tmp_path / "sharpness.csv")
    assert set(rows.measure) == {"epsilon_sharpness", "random_perturbation"}
    assert {"l_sdt", "l_tet", "accuracy", "firing_rate"} <= set(rows.metric)
    assert (rows[rows.measure == "random_perturbation"].n == 3).all()
    assert json.loads((tmp_path / "sharpness.json").read_text())["kind"] == "sharpness"
    assert exit_code(sharpness.main, [ckpt, "--radius", "-1"]) == 2


def test_plots_render_non_square_fig2_and_3d(tmp_path):
    from analysis.plots import surfaces as plots_surface
    from landscape.surface_io import Surface

    axes = [np.linspace(-1, 1, 5), np.linspace(-1, 1, 3)]
    x, y = np.meshgrid(*axes, indexing="ij")
    values = {"l_sdt": x**2 + 2 * y**2, "l_tet": 1 + x**2 + y**2, "accuracy": 0 * x + 0.9}
    meta = {"model": {"name": "m", "T": 2, "method": "sdt"}, "directions": {"kind": "random"}}
    sdt, tet = Surface(axes, values, meta), Surface(axes, {k: v + 0.1 for k, v in values.items()})
    figure = plots_surface.plot_fig2(sdt, tet)
    assert sorted(a.get_title()[:2] for a in figure.axes if a.get_title()) == [
        "A:",
        "B:",
        "C:",
        "D:",
    ]
    three_d = plots_surface.plot_2d(sdt, "surface3d")
    assert three_d.axes[0].name == "3d" and three_d.axes[0].collections  # Axes3D(fig) drew nothing
    paths = plots_surface.save_figure(
        plots_surface.plot_1d(Surface(axes[:1], {k: v[:, 1] for k, v in values.items()}, meta)),
        tmp_path / "curve",
    )
    assert all(path.stat().st_size > 1000 for path in paths)
    with pytest.raises(ValueError, match="2-D surface"):
        plots_surface.plot_2d(sdt, "wireframe")

"""Commands x bad inputs: one line, exit 2 (usage) or 1 (runtime), no traceback, nothing written.

Mostly in-process through ``main(argv)``; a few real processes check the exit path end to end.
"""

from __future__ import annotations

import copy
import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from training import checkpoint
from training.models import build

KWARGS = dict(num_classes=10, image_size=8, hidden=(4,), T=2)
COMMANDS = ("hessian", "surface", "sharpness", "momentum", "timesteps")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    torch.manual_seed(0)
    model = build("spiking_mlp", **KWARGS)
    config = {
        "model": "spiking_mlp",
        "dataset": "digits",
        "T": 2,
        "method": "sdt",
        "tet_lambda": 0.05,
        "tet_phi": 1.0,
        "seed": 0,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    good = root / "run" / "last.pt"
    checkpoint.save(good, model, "spiking_mlp", KWARGS, config, epoch=0, step=0)
    raw = torch.load(good, weights_only=True)
    for name, key, value in (
        ("model_str", "model", "x"),
        ("version_str", "format_version", "1"),
        ("config_empty", "config", {}),
    ):
        bad = copy.deepcopy(raw)
        bad[key] = value
        torch.save(bad, root / f"{name}.pt")
    (root / "text.pt").write_text("hi\n")
    (root / "somefile").write_text("x")
    return root


BAD_CHECKPOINTS = ("text.pt", "model_str.pt", "version_str.pt", "config_empty.pt", "missing.pt")
BAD_FLAGS = {
    "hessian": [["--batch-size", "0"], ["--samples", "-3"], ["--top-k", "-1"], ["--device", "x"]],
    "surface": [["--x=-1:1:1"], ["--samples", "0"], ["--chunk-size", "0"], ["--device", "x"]],
    "sharpness": [["--draws", "0"], ["--samples", "-3"], ["--batch-size", "0"]],
    "momentum": [["--samples", "-3"], ["--device", "bogus"]],
    "timesteps": [["--batch-size", "0"], ["--T", "0"], ["--samples", "-3"]],
}


def _run(name, argv, capsys):
    module = importlib.import_module(f"analysis.{name}")
    try:
        code = module.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def _assert_one_line(code, err, expected=2):
    assert code == expected and len(err) == 1 and "Traceback" not in err[0], (code, err)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("bad", BAD_CHECKPOINTS)
def test_bad_checkpoint(name, bad, files, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(name, [str(files / bad), "--out", str(out)], capsys)
    _assert_one_line(code, err)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("out", ("somefile", "/proc/x/y"))
def test_unwritable_output(name, out, files, capsys):
    target = files / out if out == "somefile" else out
    code, err = _run(name, [str(files / "run" / "last.pt"), "--out", str(target)], capsys)
    _assert_one_line(code, err)


@pytest.mark.parametrize("name,flags", [(n, f) for n, fl in BAD_FLAGS.items() for f in fl])
def test_bad_flags(name, flags, files, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(name, [str(files / "run" / "last.pt"), *flags, "--out", str(out)], capsys)
    _assert_one_line(code, err)
    assert not out.exists() or not any(out.iterdir())


def test_hessian_interrupt_is_one_line(files, tmp_path, capsys, monkeypatch):
    import analysis.hessian as hessian

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hessian, "analyze", interrupt)
    code, err = _run("hessian", [str(files / "run" / "last.pt"), "--out", str(tmp_path)], capsys)
    _assert_one_line(code, err, 130)
    assert not (tmp_path / "hessian.json").exists()


def test_surface_refuses_another_chunk_size(files, tmp_path, capsys):
    out, stem = tmp_path / "s", "surface_last_random_1d"
    argv = [str(files / "run" / "last.pt"), "--dim", "1", "--x=-1:1:5", "--samples", "16"]
    argv += ["--out", str(out), "--quiet", "--no-plots"]
    parts = out / f"{stem}.parts"
    parts.mkdir(parents=True)
    np.savez(parts / "chunk_000000.npz", l_sdt=np.zeros(2), _fingerprint=np.array("other"))
    code, err = _run("surface", [*argv, "--chunk-size", "4"], capsys)
    _assert_one_line(code, err, 1)
    assert "--chunk-size 2" in err[0]


def test_surface_redraws_when_points_are_saved(files, tmp_path, capsys):
    out = tmp_path / "s"
    argv = [str(files / "run" / "last.pt"), "--dim", "1", "--x=-1:1:3", "--samples", "16"]
    argv += ["--out", str(out), "--quiet"]
    assert _run("surface", argv, capsys)[0] == 0
    plot = out / "surface_last_random_1d_curve.png"
    plot.unlink()  # as if killed while plotting
    (out / ".surface_last_random_1d_curve.png.abc.tmp").write_bytes(b"")
    code, _ = _run("surface", argv, capsys)
    assert code == 0 and plot.exists() and not list(out.glob(".*.tmp"))
    assert _run("surface", argv, capsys)[0] == 2  # complete: needs --overwrite


@pytest.mark.parametrize("name", ("hessian", "timesteps"))
def test_real_process_not_a_checkpoint(name, files, tmp_path):
    script = REPO / "analysis" / f"{name}.py"
    result = subprocess.run(
        [sys.executable, str(script), str(files / "text.pt"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_official_style_says_it_is_a_library():
    script = REPO / "benchmarks" / "official_style.py"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 2 and "library" in result.stderr

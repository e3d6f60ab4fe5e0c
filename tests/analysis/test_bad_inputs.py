"""Commands x bad inputs: one line, exit 2 (usage) or 1 (runtime), no traceback, nothing written.

A table of hostile inputs (truncated, foreign, malicious or inconsistent checkpoints, unwritable
outputs, out-of-range and non-finite flags) against every analysis command, mostly in-process
through ``main(argv)``; a few real processes check the exit path end to end.
"""

from __future__ import annotations

import copy
import importlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from tests.helpers import save_mlp

COMMANDS = ("hessian", "surface", "sharpness", "flatness", "momentum", "timesteps")


class _Exploit:
    def __reduce__(self):
        return (subprocess.call, (["touch", "pwned"],))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = save_mlp(root / "run" / "last.pt")
    raw = torch.load(good, weights_only=True)
    for name, key, value in (
        ("model_str", "model", "x"),
        ("version_str", "format_version", "1"),
        ("config_empty", "config", {}),
        ("config_T0", "config", {**raw["config"], "T": 0}),
        ("config_model", "config", {**raw["config"], "model": "digits_snn"}),
        ("config_T3", "config", {**raw["config"], "T": 3}),
        ("malicious", "model", _Exploit()),
    ):
        bad = copy.deepcopy(raw)
        bad[key] = value
        torch.save(bad, root / f"{name}.pt")
    data = good.read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    with open(root / "pickle4.pt", "wb") as handle:
        pickle.dump({"format_version": 1}, handle, protocol=4)
    (root / "text.pt").write_text("hi\n")
    (root / "somefile").write_text("x")
    return root


BAD_CHECKPOINTS = (
    "text.pt",
    "truncated.pt",
    "pickle4.pt",
    "malicious.pt",
    "model_str.pt",
    "version_str.pt",
    "config_empty.pt",
    "config_T0.pt",
    "config_model.pt",
    "config_T3.pt",
    "missing.pt",
)
BAD_FLAGS = {
    "hessian": [["--batch-size", "0"], ["--samples", "-3"], ["--top-k", "-1"], ["--device", "x"]],
    "surface": [
        ["--x=-1:1:1"],
        ["--samples", "0"],
        ["--chunk-size", "0"],
        ["--device", "x"],
        ["--basin-threshold", "nan"],
        ["--basin-threshold", "-1"],
        ["--time-step", "0"],
    ],
    "sharpness": [
        ["--draws", "0"],
        ["--samples", "-3"],
        ["--batch-size", "0"],
        ["--radius", "nan"],
        ["--epsilon", "inf"],
    ],
    "flatness": [["--samples", "-1"], ["--batch-size", "0"], ["--eta", "nan"], ["--device", "x"]],
    "momentum": [["--samples", "-3"], ["--device", "bogus"]],
    "timesteps": [["--batch-size", "0"], ["--T", "0"], ["--samples", "-3"], ["--T", "100000"]],
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
def test_bad_checkpoint(name, bad, files, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even torch's warning before the refusal
        code, err = _run(name, [str(files / bad), "--out", str(out)], capsys)
    _assert_one_line(code, err)
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "pwned").exists()


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
    import analysis.cli.checkpoint_command as runner

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "load_input", interrupt)
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
    _assert_one_line(code, err, 2)
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


def test_a_killed_write_leaves_no_temp_file_after_a_rerun(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".flatness.csv.abc123.tmp"
    stale.write_bytes(b"partial")
    argv = [str(files / "run" / "last.pt"), "--dry-run", "--quiet", "--out", str(out)]
    assert _run("flatness", argv, capsys)[0] == 0
    assert not stale.exists() and (out / "flatness.csv").exists()


@pytest.mark.parametrize(
    "name,argv",
    [
        ("figures", ["--runs", "{file}"]),
        ("figures", ["--runs", "{runs}", "--out", "{file}"]),
        ("report", ["--runs", "{file}"]),
        ("report", ["--runs", "{runs}", "--figures", "{file}"]),
        ("study", ["--runs", "{file}"]),
        ("study", ["--figures", "{file}", "--runs", "{runs}"]),
        ("demo", ["--runs", "{file}"]),
        ("demo", ["--figures", "{file}", "--runs", "{runs}"]),
    ],
)
def test_folder_flags_that_name_a_file(name, argv, files, capsys):
    argv = [a.format(file=files / "somefile", runs=files) for a in argv]
    code, err = _run(name, argv, capsys)
    _assert_one_line(code, err)


def test_official_style_says_it_is_a_library():
    script = REPO / "benchmarks" / "official_style.py"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 2 and "library" in result.stderr

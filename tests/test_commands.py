"""Every command: ``--help`` renders in a real process (uninstalled and as a console script),
the shared flags mean the same thing everywhere, and every console script is declared."""

from __future__ import annotations

import argparse
import configparser
import importlib
import shutil
import subprocess
import sys

import pytest

from analysis.cli.checkpoint_command import CheckpointCommand
from tests.conftest import REPO

COMMANDS = sorted(
    f"{package}.{path.stem}"
    for package in ("training", "analysis")
    for path in (REPO / package).glob("*.py")
    if path.stem != "__init__"
)
CHECKPOINT_COMMANDS = [
    name
    for name in COMMANDS
    if isinstance(getattr(importlib.import_module(name), "COMMAND", None), CheckpointCommand)
]
SHARED = ("out", "device", "seed", "split", "batch_size", "samples", "dtype", "loss", "time_step")
EVERYWHERE = ("out", "overwrite", "quiet", "dry_run", "device")


def _parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(name)
    command = getattr(module, "COMMAND", None)
    return command.build_parser() if command is not None else module.build_parser()


def _actions(name: str) -> dict[str, argparse.Action]:
    return {action.dest: action for action in _parser(name)._actions}


def _signature(action: argparse.Action) -> tuple:
    return (type(action).__name__, action.choices, action.help, action.metavar)


def test_every_flat_module_is_a_command():
    assert COMMANDS == [
        "analysis.connect",
        "analysis.demo",
        "analysis.figures",
        "analysis.flatness",
        "analysis.hessian",
        "analysis.momentum",
        "analysis.report",
        "analysis.sharpness",
        "analysis.spike_gap",
        "analysis.study",
        "analysis.surface",
        "analysis.timesteps",
        "training.import_official",
        "training.run",
    ]
    for name in COMMANDS:
        text = (REPO / (name.replace(".", "/") + ".py")).read_text()
        assert 'if __name__ == "__main__":' in text, name


@pytest.mark.parametrize("name", COMMANDS)
def test_help_renders_in_a_real_process_with_an_example(name):
    script = REPO / (name.replace(".", "/") + ".py")
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, cwd="/"
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "usage:" in result.stdout and "example" in result.stdout


def test_every_command_is_a_console_script():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = dict(line.replace(" ", "").split("=") for line in lines)
    assert sorted(target.split(":")[0] for target in scripts.values()) == COMMANDS
    for script, target in scripts.items():
        module, function = target.split(":")
        assert script.startswith("tet-") and function == "main", script
        assert callable(getattr(importlib.import_module(module), "main"))


@pytest.mark.skipif(shutil.which("tet-hessian") is None, reason="the package is not installed")
def test_installed_console_script_runs():
    result = subprocess.run(["tet-hessian", "--help"], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0 and "Hessian spectrum" in result.stdout


def test_shared_flags_are_the_same_in_every_command():
    actions = {name: _actions(name) for name in CHECKPOINT_COMMANDS}
    for flag in SHARED:
        having = {name: a[flag] for name, a in actions.items() if flag in a}
        signatures = {name: _signature(action) for name, action in having.items()}
        if flag == "samples":  # flatness and momentum declare their own subsets
            signatures = {n: s for n, s in signatures.items() if n not in FOREIGN_SAMPLES}
        assert len(set(signatures.values())) <= 1, (flag, signatures)
    for flag in EVERYWHERE:
        assert all(flag in a for a in actions.values()), flag


FOREIGN_SAMPLES = ("analysis.flatness", "analysis.momentum")


def test_shared_defaults():
    actions = _actions("analysis.hessian")
    assert actions["device"].default == "auto" and actions["device"].choices == (
        "auto",
        "cpu",
        "cuda",
    )
    assert actions["split"].default == "train" and actions["samples"].default == 1024
    assert _actions("analysis.timesteps")["samples"].default is None  # the whole split


def test_positional_checkpoints_share_the_metavar():
    for name in CHECKPOINT_COMMANDS:
        positional = [a for a in _actions(name).values() if not a.option_strings]
        assert [a.metavar for a in positional] == ["CHECKPOINT"], name

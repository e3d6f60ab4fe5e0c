"""Every analysis command's parser: the shared flags mean the same things everywhere."""

from __future__ import annotations

import argparse
import importlib

import pytest

CHECKPOINT_COMMANDS = ("hessian", "surface", "sharpness", "momentum", "timesteps")
ALL_COMMANDS = (*CHECKPOINT_COMMANDS, "figures", "report", "demo")
SHARED = ("out", "device", "seed", "split", "batch_size", "quiet", "overwrite", "dry_run")
EVERYWHERE = ("out", "device", "quiet", "overwrite", "dry_run")
# momentum has no --split/--seed/--batch-size: it uses the trainer's fixed training subset.
NOT_OFFERED = {"momentum": {"seed", "split", "batch_size"}}


def _actions(name: str) -> dict[str, argparse.Action]:
    parser = importlib.import_module(f"analysis.{name}").build_parser()
    return {action.dest: action for action in parser._actions}


def _signature(action: argparse.Action) -> tuple:
    return (type(action).__name__, action.default, action.choices, action.help, action.metavar)


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_help_has_an_example(name, capsys):
    module = importlib.import_module(f"analysis.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert "example" in capsys.readouterr().out


def test_shared_flags_are_the_same_in_every_command():
    actions = {name: _actions(name) for name in CHECKPOINT_COMMANDS}
    for flag in SHARED:
        having = {name: a[flag] for name, a in actions.items() if flag in a}
        expected = set(CHECKPOINT_COMMANDS) - {n for n, s in NOT_OFFERED.items() if flag in s}
        assert set(having) == expected, flag
        signatures = {name: _signature(action) for name, action in having.items()}
        assert len(set(signatures.values())) == 1, (flag, signatures)
    for flag in EVERYWHERE:
        assert all(flag in a for a in actions.values()), flag


def test_shared_defaults():
    actions = _actions("hessian")
    assert actions["device"].default == "auto" and actions["device"].choices == (
        "auto",
        "cpu",
        "cuda",
    )
    assert actions["split"].default == "train"
    assert _actions("timesteps")["split"].default == "train"


def test_positional_checkpoints_share_the_metavar():
    for name in CHECKPOINT_COMMANDS:
        positional = [a for a in _actions(name).values() if not a.option_strings]
        assert [a.metavar for a in positional] == ["CHECKPOINT"], name
        assert positional[0].nargs == (None if name == "surface" else "+"), name

"""Settings: declared fields validate themselves and become command-line flags."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

import pytest

from toolkit.command import ArgumentParser
from toolkit.errors import ConfigError
from toolkit.settings import (
    MAX_CONFIG_BYTES,
    add_config_args,
    apply_defaults,
    check,
    config_from_args,
    flag,
    load_config_file,
    option,
    same_as,
)


@dataclass(frozen=True)
class Example:
    top_k: int = option(5, "largest eigenvalues", minimum=0)
    rate: float = option(0.5, "share of the samples, in %", above=0.0, maximum=1.0)
    tol: float = option(1e-3, "relative tolerance", above=0.0)
    cap: float = option(10.0, "largest value", maximum=10.0)
    mode: str = option("a", "the mode", choices=("a", "b"))
    cached: bool = option(True, "keep the graph")
    T: tuple[int, ...] = option((1, 2), "time steps", minimum=1, maximum=8)
    limit: int | None = option(None, "optional limit", minimum=1)
    p: float = option(math.inf, "norm: 2 or inf", choices=(2.0, math.inf), finite=False)
    free: float = option(1.0, "any finite number")
    radii: tuple[float, ...] = option((0.5,), "radii, or none", above=0.0, empty=True)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Recorder:
    """Reuses two declarations of :class:`Example`."""

    tol: float = same_as(Example, "tol")
    T: tuple[int, ...] = same_as(Example, "T")

    def __post_init__(self) -> None:
        check(self)


def test_defaults_are_valid_and_flag_names():
    assert Example().T == (1, 2) and Example(limit=None).limit is None
    assert Example(p=math.inf).p == math.inf and Example(p=2.0).p == 2.0
    assert Example(rate=1.0, cap=-5.0, top_k=0, T=(8, 1)).T == (8, 1)  # inclusive ends
    assert Example(free=-1e300, tol=3).tol == 3  # an int is a valid float
    assert flag("num_matvecs") == "--num-matvecs" and flag("T") == "--T"


def test_a_tuple_may_be_empty_only_where_declared():
    assert Example(radii=()).radii == ()
    with pytest.raises(ConfigError, match=r"^radii must be a list, got 0.5"):
        Example(radii=0.5)
    with pytest.raises(ConfigError, match=r"^radii must be > 0, got \(0.5, 0.0\)"):
        Example(radii=(0.5, 0.0))
    assert config_from_args(_parser().parse_args(["--radii"]), Example).radii == ()
    assert config_from_args(_parser().parse_args([]), Example).radii == (0.5,)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"top_k": -1}, "top_k must be >= 0, got -1"),
        ({"rate": 0.0}, "rate must be in (0, 1], got 0.0"),
        ({"rate": 1.5}, "rate must be in (0, 1], got 1.5"),
        ({"tol": 0.0}, "tol must be > 0, got 0.0"),
        ({"cap": 10.5}, "cap must be <= 10, got 10.5"),
        ({"limit": 0}, "limit must be >= 1, got 0"),
        ({"mode": "c"}, "mode must be one of a, b, got 'c'"),
        ({"p": 3.0}, "p must be one of 2.0, inf, got 3.0"),
        ({"T": (0,)}, "T must be in [1, 8], got (0,)"),
        ({"T": (2, 9)}, "T must be in [1, 8], got (2, 9)"),
        ({"T": ()}, "T must be a non-empty list, got ()"),
        ({"T": [1, 2]}, "T must be a non-empty list, got [1, 2]"),
        ({"T": (1, 2.5)}, "T must be an integer, got (1, 2.5)"),
        ({"cached": "false"}, "cached must be true or false, got 'false'"),
        ({"cached": 1}, "cached must be true or false, got 1"),
        ({"top_k": True}, "top_k must be an integer, got True"),
        ({"top_k": 2.0}, "top_k must be an integer, got 2.0"),
        ({"rate": True}, "rate must be a number, got True"),
        ({"rate": "0.5"}, "rate must be a number, got '0.5'"),
        ({"mode": 1}, "mode must be a string, got 1"),
        ({"top_k": None}, "top_k must not be null, got None"),
        ({"free": math.nan}, "free must be a number, not NaN, got nan"),
        ({"p": math.nan}, "p must be a number, not NaN, got nan"),  # NaN even where inf is fine
        ({"free": math.inf}, "free must be finite, got inf"),
        ({"free": -math.inf}, "free must be finite, got -inf"),
        ({"tol": math.inf}, "tol must be finite, got inf"),
    ],
)
def test_check_refuses_with_one_line_naming_the_field(changes, message):
    with pytest.raises(ConfigError) as info:
        Example(**changes)
    assert str(info.value) == message
    assert info.value.field == next(iter(changes))
    assert "\n" not in str(info.value)


def test_same_as_copies_default_help_and_range():
    source = {f.name: f for f in fields(Example)}
    for copy in fields(Recorder):
        assert copy.default == source[copy.name].default
        assert dict(copy.metadata) == dict(source[copy.name].metadata)
    assert Recorder().T == (1, 2)
    with pytest.raises(ConfigError, match=r"^tol must be > 0, got -1.0$"):
        Recorder(tol=-1.0)
    with pytest.raises(ConfigError, match=r"T must be in \[1, 8\]"):
        Recorder(T=(9,))


def _parser(**kwargs) -> ArgumentParser:
    parser = ArgumentParser(prog="example.py")
    add_config_args(parser, Example, **kwargs)
    return parser


def test_flags_defaults_and_types():
    args = _parser().parse_args([])
    assert vars(args) == {
        "top_k": 5,
        "rate": 0.5,
        "tol": 1e-3,
        "cap": 10.0,
        "mode": "a",
        "cached": True,
        "T": [1, 2],
        "limit": None,
        "p": math.inf,
        "free": 1.0,
        "radii": [0.5],
    }
    argv = ["--top-k", "3", "--no-cached", "--T", "3", "4", "5", "--limit", "2", "--p", "2"]
    args = _parser().parse_args(argv + ["--mode", "b", "--rate", "0.25"])
    assert (args.top_k, args.cached, args.T, args.limit, args.p) == (3, False, [3, 4, 5], 2, 2.0)
    settings = config_from_args(args, Example)
    assert settings == Example(
        top_k=3, rate=0.25, mode="b", cached=False, T=(3, 4, 5), limit=2, p=2
    )
    assert isinstance(settings.T, tuple)
    assert _parser().parse_args(["--cached"]).cached is True


def test_boolean_and_tuple_actions():
    actions = {a.dest: a for a in _parser()._actions}
    assert isinstance(actions["cached"], argparse.BooleanOptionalAction)
    assert actions["cached"].option_strings == ["--cached", "--no-cached"]
    assert actions["T"].nargs == "+" and actions["T"].type is int
    assert actions["radii"].nargs == "*" and actions["radii"].type is float
    assert actions["top_k"].nargs is None and actions["top_k"].type is int
    assert actions["mode"].choices == ("a", "b")


def test_exclude_and_title():
    parser = _parser(exclude=("mode", "T"), title="spectrum")
    dests = {a.dest for a in parser._actions}
    assert "mode" not in dests and "T" not in dests and "top_k" in dests
    assert "spectrum:" in parser.format_help()


def test_help_renders_with_a_percent_sign():
    text = _parser().format_help()
    assert "share of the samples, in % (default: 0.5)" in text
    assert "time steps (default: [1, 2])" in text
    assert "--cached, --no-cached" in text
    assert "Example fields:" in text


def test_bad_choice_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--mode", "z"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("example.py: error: argument --mode: invalid choice")
    assert err.count("\n") == 1 and "usage:" not in err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--top-k", "-1"], "--top-k must be >= 0, got -1"),
        (["--rate", "0"], "--rate must be in (0, 1], got 0.0"),
        (["--T", "0", "2"], "--T must be in [1, 8], got (0, 2)"),
        (["--free", "nan"], "--free must be a number, not NaN, got nan"),
        (["--tol", "inf"], "--tol must be finite, got inf"),
    ],
)
def test_config_from_args_names_the_flag(argv, message):
    args = _parser().parse_args(argv)
    with pytest.raises(ConfigError) as info:
        config_from_args(args, Example)
    assert str(info.value) == message
    assert info.value.field is not None


def test_overrides_win_and_keep_the_field_name():
    args = _parser().parse_args(["--top-k", "7"])
    assert config_from_args(args, Example, top_k=1).top_k == 1
    with pytest.raises(ConfigError) as info:
        config_from_args(args, Example, top_k=-2)
    assert str(info.value) == "top_k must be >= 0, got -2"  # not a flag: the caller set it


def test_config_from_args_ignores_missing_flags():
    parser = _parser(exclude=("mode",))
    settings = config_from_args(parser.parse_args(["--T", "4"]), Example)
    assert settings.mode == "a" and settings.T == (4,)


def test_load_config_file(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"top_k": 2, "T": [1, 3]}')
    assert load_config_file(good) == {"top_k": 2, "T": [1, 3]}
    assert load_config_file(str(good)) == {"top_k": 2, "T": [1, 3]}


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.json", None, r"cannot read config file .*missing\.json: .*No such file"),
        ("latin1.json", b'{"mode": "\xe9"}', r"cannot read config file .*: not UTF-8 text$"),
        (
            "deep.json",
            b"[" * 200_000 + b"]" * 200_000,
            r"cannot read config file .*nested too deep$",
        ),
        ("list.json", b"[1, 2]", r"config file .*list\.json must hold a JSON object"),
        ("number.json", b"3", r"must hold a JSON object of field values$"),
        ("broken.json", b'{"top_k": ', r"cannot read config file .*broken\.json: Expecting value"),
        (
            "large.json",
            b'{"a": "' + b"x" * MAX_CONFIG_BYTES + b'"}',
            r"config file .*large\.json is over 1 MiB",
        ),
    ],
)
def test_load_config_file_refuses(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_config_file(path)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_a_folder_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path)


def test_apply_defaults(tmp_path):
    parser = _parser()
    apply_defaults(parser, {"top_k": 9, "T": [4], "extra": 1}, Example, ignored=("extra",))
    args = parser.parse_args([])
    assert (args.top_k, args.T) == (9, [4])
    assert not hasattr(args, "extra")
    assert parser.parse_args(["--top-k", "1"]).top_k == 1  # flags still win
    with pytest.raises(ConfigError) as info:
        apply_defaults(_parser(), {"top_k": 1, "bogus": 2, "zzz": 3}, Example)
    assert str(info.value).startswith("unknown config field(s) ['bogus', 'zzz']; known: [")
    assert "'top_k'" in str(info.value)

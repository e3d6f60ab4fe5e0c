"""The command runner: one-line errors and exit codes, the output folder, provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from toolkit.command import (
    ArgumentParser,
    add_output_args,
    check_folders,
    command,
    envelope,
    prepare_output,
    provenance,
)
from toolkit.errors import (
    INTERRUPTED,
    RUNTIME,
    USAGE,
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    ToolkitError,
)
from toolkit.settings import option


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="tool.py")
    parser.add_argument("--x", default=None)
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--many", nargs="+", type=float, default=None)
    parser.add_argument("--flag", action="store_true")
    return parser


def test_one_value_options_take_values_that_start_with_a_dash():
    args = _parser().parse_args(["--x", "-1:1:5", "--n", "-3"])
    assert args.x == "-1:1:5" and args.n == -3
    assert _parser().parse_args(["--x=-2:2:3"]).x == "-2:2:3"
    assert _parser().parse_args(["--many", "-1", "2"]).many == [-1.0, 2.0]  # argparse's own


def test_an_option_is_not_taken_as_a_value(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--x", "--flag"])
    assert info.value.code == USAGE
    err = capsys.readouterr().err
    assert err == "tool.py: error: argument --x: expected one argument (see --help)\n"


def test_usage_errors_are_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--n", "three"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("tool.py: error: argument --n: invalid int value: 'three'")
    assert err.endswith("(see --help)\n") and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--unknown"])
    assert info.value.code == 2
    assert "unrecognized arguments: --unknown" in capsys.readouterr().err


def _raising(error: BaseException):
    def main(argv):
        raise error

    return command(main, "tool.py", interrupted="rerun it")


@pytest.mark.parametrize(
    "error,code",
    [
        (ConfigError("bad flag\nsecond line"), 2),
        (DataError("no such dataset"), 2),
        (CheckpointError("truncated"), 2),
        (DivergenceError("loss is nan"), 1),
        (ToolkitError("failed to converge"), 1),
    ],
)
def test_expected_errors_exit_with_their_code_in_one_line(error, code, capsys):
    assert _raising(error)([]) == code == error.exit_code
    first = str(error).splitlines()[0]
    assert capsys.readouterr().err == f"tool.py: error: {first}\n"


def test_exit_code_constants():
    assert (USAGE, RUNTIME, INTERRUPTED) == (2, 1, 130)
    assert ConfigError("x", field="top_k").field == "top_k"


def test_an_empty_message_names_the_error(capsys):
    assert _raising(DataError(""))([]) == 2
    assert capsys.readouterr().err == "tool.py: error: DataError\n"


def test_ctrl_c_exits_130(capsys):
    assert _raising(KeyboardInterrupt())([]) == 130
    assert capsys.readouterr().err == "tool.py: interrupted; rerun it\n"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"),
        RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 10 GB"),
        MemoryError(),
        torch.OutOfMemoryError("out of memory"),
    ],
)
def test_out_of_memory_exits_1(error, capsys):
    assert _raising(error)([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tool.py: error: out of memory; ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "error", [RuntimeError("shape mismatch"), ValueError("a bug"), KeyError("k")]
)
def test_other_exceptions_keep_their_traceback(error):
    with pytest.raises(type(error)):
        _raising(error)([])


def test_command_returns_mains_status_and_keeps_its_name():
    def main(argv):
        """Doc."""
        return len(argv)

    wrapped = command(main, "tool.py")
    assert wrapped(["a", "b"]) == 2 and wrapped.__name__ == "main" and wrapped.__doc__ == "Doc."


def test_output_args():
    parser = ArgumentParser(prog="tool.py")
    add_output_args(parser, "runs/<run>/analysis")
    args = parser.parse_args([])
    assert (args.out, args.overwrite, args.quiet, args.dry_run) == (None, False, False, False)
    args = parser.parse_args(["--out", "x", "--overwrite", "--quiet", "--dry-run"])
    assert args.out == Path("x") and args.overwrite and args.quiet and args.dry_run
    assert "runs/<run>/analysis" in parser.format_help()


def test_prepare_output_creates_the_folder(tmp_path):
    out = tmp_path / "a" / "b"
    assert prepare_output(out, ["r.json"], overwrite=False) == out
    assert out.is_dir() and list(out.iterdir()) == []


def test_prepare_output_refuses_existing_files_without_overwrite(tmp_path):
    (tmp_path / "r.csv").write_text("old")
    with pytest.raises(ConfigError, match=r"r\.csv exists; pass --overwrite or choose another"):
        prepare_output(tmp_path, ["r.json", "r.csv"], overwrite=False)
    assert (tmp_path / "r.csv").read_text() == "old"
    assert prepare_output(tmp_path, ["r.json", "r.csv"], overwrite=True) == tmp_path
    assert (tmp_path / "r.csv").read_text() == "old"  # checked, not removed
    assert prepare_output(tmp_path, ["other.json"], overwrite=False) == tmp_path


def test_prepare_output_refuses_a_file_as_folder(tmp_path):
    out = tmp_path / "file"
    out.write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"--out .*file is a file; expected a folder"):
            prepare_output(out, ["r.json"], overwrite=overwrite)


def test_prepare_output_refuses_a_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"is not a writable folder"):
        prepare_output(tmp_path / "file" / "sub", ["r.json"], overwrite=False)


def test_prepare_output_removes_stale_temporaries_of_its_files_only(tmp_path):
    stale = [tmp_path / ".r.json.abc123.tmp", tmp_path / ".r.csv.x.tmp"]
    kept = [tmp_path / ".other.json.abc.tmp", tmp_path / "r.json.tmp", tmp_path / "keep.txt"]
    for path in stale + kept:
        path.write_text("partial")
    prepare_output(tmp_path, ["r.json", "r.csv"], overwrite=False)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_check_folders_names_the_flag_of_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    check_folders({"--runs": tmp_path, "--figures": tmp_path / "new"})  # a folder, or not yet
    with pytest.raises(ConfigError) as info:
        check_folders(
            {"--runs": tmp_path, "--figures": tmp_path / "file", "--x": tmp_path / "file"}
        )
    assert str(info.value) == f"--figures {tmp_path / 'file'} is a file; expected a folder"
    assert info.value.exit_code == 2


def test_provenance_keys():
    short = provenance(with_time=False)
    assert set(short) == {"git_commit", "git_dirty", "torch"}
    assert short["torch"] == str(torch.__version__)
    assert short["git_dirty"] in (None, True, False)
    full = provenance()
    assert set(full) == set(short) | {"created", "numpy", "python", "argv"}
    assert isinstance(full["argv"], list) and full["created"][:2] == "20"


@dataclass(frozen=True)
class Tiny:
    steps: int = option(3, "steps", minimum=1)
    path: Path = option(Path("a/b"), "a path")
    values: tuple[float, ...] = option((1.0, 2.0), "values")


def test_envelope():
    record = envelope("hessian", Tiny(), inputs=["x.pt"], results={"top": [1.0]})
    assert list(record) == ["kind", "format_version", "settings", "inputs", "results", "provenance"]
    assert record["kind"] == "hessian" and record["format_version"] == 1
    assert record["settings"] == {"steps": 3, "path": "a/b", "values": [1.0, 2.0]}
    assert set(record["provenance"]) >= {"git_commit", "git_dirty", "torch", "created"}
    json.dumps(record)  # plain types only
    assert envelope("x", {"a": 1})["settings"] == {"a": 1}

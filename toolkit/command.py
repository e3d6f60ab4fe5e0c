"""What every command shares: one-line errors and exit codes, the output folder, provenance.

A command is a ``main(argv) -> int`` wrapped by :func:`command`: an expected error
(:class:`toolkit.errors.ToolkitError`) is one line on stderr and its ``exit_code`` (2 for bad
input, 1 for a failure while computing), running out of memory is one line and 1, Ctrl-C one
line and 130. The same mapping serves ``training/run.py`` and every analysis command.

Output files go into one folder: :func:`prepare_output` refuses to replace finished results
without ``--overwrite``, removes the temp files of killed writes and checks that the folder can be
written, before any work. :func:`envelope` is the header every JSON result carries (kind, format
version, settings, inputs, provenance).
"""

from __future__ import annotations

import argparse
import functools
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from toolkit.errors import INTERRUPTED, RUNTIME, ConfigError, ToolkitError
from toolkit.io import remove_stale_temporaries, to_plain

__all__ = [
    "ArgumentParser",
    "add_output_args",
    "check_folders",
    "command",
    "envelope",
    "prepare_output",
    "provenance",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2), without the usage block, and
    whose one-value options take values that start with a dash (``--x -1:1:51``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._joined(args), namespace)

    def _joined(self, argv: list[str]) -> list[str]:
        """``["--x", "-1:1:51"]`` -> ``["--x=-1:1:51"]`` for options that take one value, when
        the value is not itself an option (argparse would read it as one)."""
        options = {o for action in self._actions for o in action.option_strings}
        takes_one = {
            o for action in self._actions if action.nargs is None for o in action.option_strings
        }
        joined, i = [], 0
        while i < len(argv):
            value = argv[i + 1] if i + 1 < len(argv) else ""
            if argv[i] in takes_one and value.startswith("-") and value not in options:
                joined.append(f"{argv[i]}={value}")
                i += 2
            else:
                joined.append(argv[i])
                i += 1
        return joined


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def command(
    main: Callable[..., int], prog: str, interrupted: str = "run the same command again"
) -> Callable:
    """Wrap a command's ``main``: expected errors, running out of memory and Ctrl-C become one
    line on stderr (``<prog>: error: ...``, as argparse writes usage errors) and their exit
    code; anything else is a bug and keeps its traceback.

    Args:
        main: ``main(argv) -> int``.
        prog: The command's name, e.g. ``hessian.py``.
        interrupted: What to do after Ctrl-C (printed after "interrupted; ").
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
            return INTERRUPTED
        except ToolkitError as error:
            print(f"{prog}: error: {_first_line(error)}", file=sys.stderr)
            return error.exit_code
        except (MemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error):
                raise
            advice = "use fewer samples, a smaller --batch-size, T or model"
            print(f"{prog}: error: out of memory; {advice}", file=sys.stderr)
            return RUNTIME

    return wrapped


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def add_output_args(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--out``, ``--overwrite``, ``--quiet`` and ``--dry-run``, as every analysis command has.

    Args:
        parser: The parser to extend.
        default_out: Where results go without ``--out`` (said in the help).
    """
    add = parser.add_argument
    add("--out", type=Path, default=None, help=f"output folder (default: {default_out})")
    add("--overwrite", action="store_true", help="replace existing output files")
    add("--quiet", action="store_true", help="no progress on stderr")
    add("--dry-run", action="store_true", help="one small batch and tiny settings (smoke tests)")


def prepare_output(out: Path, names: Sequence[str], overwrite: bool) -> Path:
    """Make ``out`` ready for the files ``names`` before any work is done.

    Removes the temp files that killed writes of these files left, creates the folder and checks
    that it can be written.

    Raises:
        ConfigError: If ``out`` is a file or cannot be written, or one of the files exists and
            ``overwrite`` is False.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a folder for the results")
    existing = [out / name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} exists; pass --overwrite or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        reason = error.strerror or error
        message = f"--out {out} is not a writable folder ({reason}); choose another"
        raise ConfigError(message) from None
    remove_stale_temporaries(out, names)
    return out


def check_folders(folders: dict[str, Path]) -> None:
    """Each path (``{flag: path}``) is a folder or does not exist yet.

    Raises:
        ConfigError: Naming the first flag whose path is a file.
    """
    for name, path in folders.items():
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{name} {path} is a file; expected a folder")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(with_time: bool = True) -> dict:
    """Code version and environment of this process.

    Args:
        with_time: Include the wall-clock time (checkpoints leave it out, so that the same
            training writes the same bytes).
    """
    status = _git("status", "--porcelain", "--untracked-files=no")
    record = {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "torch": str(torch.__version__),
    }
    if with_time:
        record.update(
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            numpy=np.__version__,
            python=platform.python_version(),
            argv=list(sys.argv),
        )
    return record


def envelope(kind: str, settings, **entries) -> dict:
    """The header of every JSON result: ``kind``, ``format_version``, ``settings`` (a settings
    object or dict), further entries (inputs, data, results) and ``provenance``."""
    return {
        "kind": kind,
        "format_version": 1,
        "settings": to_plain(settings),
        **entries,
        "provenance": provenance(),
    }

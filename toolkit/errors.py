"""Expected errors: every command prints them as one line, without a traceback, and exits with
the error's ``exit_code``.

Bad input the user can fix (a flag, a config file, a dataset, a checkpoint) exits 2, as argparse's
usage errors do; a failure while computing exits 1; Ctrl-C exits 130 (:mod:`toolkit.command`).
"""

__all__ = [
    "USAGE",
    "RUNTIME",
    "INTERRUPTED",
    "ToolkitError",
    "DataError",
    "CheckpointError",
    "ConfigError",
    "DivergenceError",
]

USAGE, RUNTIME, INTERRUPTED = 2, 1, 130


class ToolkitError(Exception):
    """An expected failure while computing (exit 1); subclasses mark bad input (exit 2)."""

    exit_code = RUNTIME


class DataError(ToolkitError):
    """A dataset is missing, malformed or unknown."""

    exit_code = USAGE


class CheckpointError(ToolkitError):
    """A checkpoint is missing, truncated, foreign, or does not fit its model or config."""

    exit_code = USAGE


class ConfigError(ToolkitError):
    """A setting, a flag or a combination of them is invalid.

    Attributes:
        field: The settings field the message starts with, if it is about one field (a command
            line then names its flag instead).
    """

    exit_code = USAGE

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DivergenceError(ToolkitError):
    """The loss became NaN or infinite during training."""

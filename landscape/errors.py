"""Expected user-facing errors: the CLIs print them as one line and exit non-zero.

Defined on the bottom floor so that every package raises and catches the same classes.
"""

__all__ = ["ToolkitError", "DataError", "CheckpointError", "ConfigError", "DivergenceError"]


class ToolkitError(Exception):
    """Base class of errors caused by input the user can fix (no traceback is shown)."""


class DataError(ToolkitError):
    """A dataset is missing, malformed or unknown."""


class CheckpointError(ToolkitError):
    """A checkpoint is missing, truncated, foreign, or does not fit its model."""


class ConfigError(ToolkitError):
    """A configuration value or combination is invalid."""


class DivergenceError(ToolkitError):
    """The loss became NaN or infinite during training."""

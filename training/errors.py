"""The toolkit's user-facing errors; defined on the bottom floor (``landscape.errors``)."""

from landscape.errors import (  # noqa: F401
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    ToolkitError,
)

__all__ = ["ToolkitError", "DataError", "CheckpointError", "ConfigError", "DivergenceError"]

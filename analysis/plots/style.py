"""One publication style for every figure: colour-blind-safe palette, SDT and TET fixed colours."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from toolkit.io import atomic_write  # noqa: E402

__all__ = ["COLORS", "LABELS", "apply_style", "color", "save_figure", "save_table"]

# Okabe-Ito palette: SDT blue, TET vermillion everywhere.
COLORS = {"sdt": "#0072B2", "tet": "#D55E00", "other": "#009E73", "grey": "#999999"}
LABELS = {"sdt": "SDT", "tet": "TET"}


def color(method: str) -> str:
    """Colour of a method name (``sdt``, ``tet``, ``sdt->tet@k``, ...)."""
    return COLORS.get(str(method).lower(), COLORS["other"])


def apply_style() -> None:
    """Readable fonts and light grids (called by the figure functions, not at import)."""
    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "savefig.dpi": 150,
            "figure.dpi": 100,
        }
    )


# no creation date in the PDF, so the same data gives the same bytes
_METADATA = {"png": {}, "pdf": {"CreationDate": None}}


def save_figure(figure, path: str | Path, dpi: float | None = None) -> list[Path]:
    """Write ``path`` as PNG and PDF (same stem), each atomically; returns both paths.

    Args:
        figure: A matplotlib figure (closed afterwards).
        path: The files' stem (its suffix is replaced).
        dpi: Resolution of the PNG (default: the style's ``savefig.dpi``).
    """
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".png", ".pdf") else path
    written = []
    for fmt in ("png", "pdf"):
        target = Path(f"{stem}.{fmt}")
        atomic_write(
            target,
            lambda file, fmt=fmt: figure.savefig(
                file, format=fmt, bbox_inches="tight", metadata=_METADATA[fmt], dpi=dpi
            ),
        )
        written.append(target)
    plt.close(figure)
    return written


def save_table(frame: pd.DataFrame, path: str | Path, na_rep: str = "") -> Path:
    """Write the data a figure plots as CSV, atomically (no index; NaN as ``na_rep``)."""
    text = frame.to_csv(index=False, na_rep=na_rep)
    return atomic_write(path, lambda file: file.write(text.encode()))

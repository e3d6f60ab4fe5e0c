"""Plots of loss surfaces: a :class:`landscape.surface_io.Surface` in, a matplotlib ``Figure`` out.

No computation and no file reading here: values are drawn as stored. Figures are built
with ``matplotlib.figure.Figure`` (no pyplot state). 2-D values are x-major (``[i, j]`` is
``(x_i, y_j)``), so ``meshgrid(..., indexing="ij")`` gives matching shapes for non-square grids
(the bug that makes loss-landscape's ``plot_2D`` crash). The 3-D axes come from
``add_subplot(projection="3d")``: ``Axes3D(fig)`` draws nothing on current matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.plots.style import save_figure
from landscape.surface_io import Surface

__all__ = [
    "LABELS",
    "plot_1d",
    "plot_2d",
    "plot_fig2",
    "save_surface_plots",
]

LABELS = {"l_sdt": r"$\mathcal{L}_{SDT}$", "l_tet": r"$\mathcal{L}_{TET}$", "accuracy": "accuracy"}
KINDS_2D = ("contour", "contourf", "heatmap", "surface3d")


def _axis_labels(surface: Surface) -> tuple[str, str]:
    kind = surface.metadata.get("directions", {}).get("kind", "")
    if kind == "pca":
        ratios = surface.metadata["directions"].get("explained_variance_ratio", [])
        labels = [f"PC{i + 1} ({ratio:.1%} of variance)" for i, ratio in enumerate(ratios)]
        return tuple((labels + ["", ""])[:2])
    names = {"interp": ("to checkpoint 2", "to checkpoint 3"), "eigen": ("eigvec 1", "eigvec 2")}
    return names.get(kind, ("direction 1", "direction 2"))


def _title(surface: Surface) -> str:
    if "model" not in surface.metadata:  # a surface of the Python API: no training run behind it
        return str(surface.metadata.get("title", "loss surface"))
    model = surface.metadata["model"]
    method = str(model.get("method", "")).upper()
    return f"{method} minimum ({model.get('name', '')}, T={model.get('T', '?')})"


def plot_1d(surface: Surface, metrics: Sequence[str] = ("l_sdt", "l_tet")) -> Figure:
    """1-D slice: the losses on the left axis, accuracy on a second (right) axis.

    Args:
        surface: A 1-D surface.
        metrics: Loss-like metrics drawn on the left axis.

    Returns:
        The figure.
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    x = surface.axes[0]
    for metric in metrics:
        axes.plot(x, surface.values[metric], label=LABELS.get(metric, metric))
    axes.set(xlabel=_axis_labels(surface)[0], ylabel="loss", title=_title(surface))
    handles, labels = axes.get_legend_handles_labels()
    if "accuracy" in surface.values:
        right = axes.twinx()
        right.plot(x, surface.values["accuracy"], "k--", lw=1, label="accuracy")
        right.set(ylabel="accuracy", ylim=(0, 1))
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axes.legend(handles, labels, loc="best")
    return figure


def _levels(values: np.ndarray, num: int = 30) -> np.ndarray:
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), np.percentile(finite, 95)) if finite.size else (0.0, 1.0)
    return np.linspace(low, high if high > low else low + 1e-12, num)


def _draw_2d(axes, surface: Surface, metric: str, kind: str, levels: np.ndarray | None = None):
    X, Y = np.meshgrid(*surface.axes, indexing="ij")  # [nx, ny], like the values
    Z = np.ma.masked_invalid(surface.values[metric])
    levels = _levels(Z.filled(np.nan)) if levels is None else levels
    if kind == "surface3d":
        clipped = np.clip(Z.filled(np.nan), None, levels[-1])
        mappable = axes.plot_surface(X, Y, clipped, cmap="viridis", vmin=levels[0], vmax=levels[-1])
    elif kind == "heatmap":
        mappable = axes.pcolormesh(
            X, Y, Z, shading="nearest", cmap="viridis", vmin=levels[0], vmax=levels[-1]
        )
    elif kind == "contourf":
        mappable = axes.contourf(X, Y, Z, levels=levels, cmap="viridis", extend="max")
    else:
        mappable = axes.contour(X, Y, Z, levels=levels, cmap="viridis")
        axes.clabel(mappable, levels[::5], inline=True, fontsize=7, fmt="%.3g")
    trajectory = surface.extras.get("trajectory")
    if trajectory is not None and kind != "surface3d" and trajectory.shape[1] >= 2:
        axes.plot(trajectory[:, 0], trajectory[:, 1], "r.-", lw=1, label="training trajectory")
        axes.legend(loc="lower right", fontsize=7)
    xlabel, ylabel = _axis_labels(surface)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=LABELS.get(metric, metric))
    return mappable


def plot_2d(
    surface: Surface, kind: str = "contour", metrics: Sequence[str] = ("l_sdt", "l_tet")
) -> Figure:
    """2-D surface, one panel per metric.

    Args:
        surface: A 2-D surface.
        kind: ``contour``, ``contourf``, ``heatmap`` or ``surface3d``. A PCA surface's trajectory
            is drawn over the 2-D kinds.
        metrics: One panel each.

    Returns:
        The figure.

    Raises:
        ValueError: On an unknown kind or a 1-D surface.
    """
    if kind not in KINDS_2D or len(surface.axes) != 2:
        raise ValueError(f"plot_2d needs a 2-D surface and kind in {KINDS_2D}, got {kind!r}")
    figure = Figure(figsize=(5.2 * len(metrics), 4.4), layout="constrained")
    projection = "3d" if kind == "surface3d" else None
    for i, metric in enumerate(metrics):
        axes = figure.add_subplot(1, len(metrics), i + 1, projection=projection)
        mappable = _draw_2d(axes, surface, metric, kind)
        if kind != "contour":
            figure.colorbar(mappable, ax=axes, shrink=0.8, extend="max")
    figure.suptitle(_title(surface) + "\ncolours clipped at the 95th percentile (arrow)")
    return figure


def plot_fig2(sdt: Surface, tet: Surface, kind: str = "contourf") -> Figure:
    """TET Fig. 2: rows = minimum found by SDT / TET, columns = L_SDT / L_TET, shared levels.

    Args:
        sdt: 2-D surface around the SDT-trained checkpoint.
        tet: 2-D surface around the TET-trained checkpoint (same grid and direction settings).
        kind: A kind of :func:`plot_2d`.

    Returns:
        The 2x2 figure (panels A-D as in the paper).
    """
    figure = Figure(figsize=(10, 8.4), layout="constrained")
    projection = "3d" if kind == "surface3d" else None
    for col, metric in enumerate(("l_sdt", "l_tet")):
        both = np.concatenate([s.values[metric].ravel() for s in (sdt, tet)])
        levels = _levels(both)
        for row, (name, surface) in enumerate((("SDT", sdt), ("TET", tet))):
            axes = figure.add_subplot(2, 2, 2 * row + col + 1, projection=projection)
            mappable = _draw_2d(axes, surface, metric, kind, levels)
            axes.set_title(f"{'ABCD'[2 * row + col]}: {name} minimum, {LABELS[metric]}")
        if kind != "contour":
            figure.colorbar(mappable, ax=figure.axes[-2:], shrink=0.8)
    return figure


def save_surface_plots(surface: Surface, stem: Path) -> list[Path]:
    """All standard plots of a surface: the 1-D curve, or the four 2-D kinds.

    Returns:
        The files written, named ``<stem>_<kind>.{png,pdf}``.
    """
    if len(surface.axes) == 1:
        return save_figure(plot_1d(surface), Path(f"{stem}_curve"), dpi=130)
    paths = []
    for kind in KINDS_2D:
        paths += save_figure(plot_2d(surface, kind), Path(f"{stem}_{kind}"), dpi=130)
    return paths

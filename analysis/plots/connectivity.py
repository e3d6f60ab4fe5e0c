"""Loss along the paths between two minima (the connectivity profile of ``analysis/connect.py``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from analysis.plots.style import COLORS, apply_style

__all__ = ["plot_profiles", "study_profiles_figure"]

_PATH_COLORS = {"line": COLORS["grey"], "bezier": COLORS["tet"], "polychain": COLORS["sdt"]}
_BN_STYLES = {"recomputed": "-", "interpolated": ":"}


def _panels(data: pd.DataFrame, row: str, rows: list, y: str, ylabel: str, title, height: float):
    """One panel per value of ``row`` (rows of the grid) and alignment (columns), ``y`` against
    ``t`` in each: one colour per path, solid with BatchNorm statistics recomputed, dotted
    interpolated, and the band ``ci_low``..``ci_high`` where the data has one.
    ``title(value, aligned, part)`` names a panel."""
    aligned = sorted(set(data.aligned))
    figure, axes = plt.subplots(
        len(rows), len(aligned), figsize=(4.2 * len(aligned), height * len(rows)), squeeze=False
    )
    for i, value in enumerate(rows):
        for j, is_aligned in enumerate(aligned):
            ax = axes[i][j]
            part = data[(data[row] == value) & (data.aligned == is_aligned)]
            for (path, bn), curve in part.groupby(["path", "bn"], sort=False):
                curve = curve.sort_values("t")
                color = _PATH_COLORS[path]
                ax.plot(curve.t, curve[y], _BN_STYLES[bn], color=color, label=f"{path}, BN {bn}")
                if "ci_low" in curve:
                    ax.fill_between(
                        curve.t, curve.ci_low, curve.ci_high, color=color, alpha=0.15, lw=0
                    )
            ax.set_title(title(value, is_aligned, part))
            ax.set_xlabel("t (A at 0, B at 1)")
            ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def _alignment(aligned: bool) -> str:
    return "aligned" if aligned else "not aligned"


def plot_profiles(profile: pd.DataFrame, metric: str = "l_sdt"):
    """``metric`` against ``t``: one panel per spike kind (rows) and alignment (columns), one
    colour per path, solid with BatchNorm statistics recomputed, dotted interpolated.

    Args:
        profile: Rows of ``analysis.connectivity.PROFILE_COLUMNS``.
        metric: ``l_sdt``, ``l_tet``, ``error`` or ``firing_rate``.
    """
    apply_style()
    spikes = sorted(set(profile.spikes), key=["hard", "smooth"].index)

    def title(spike, aligned, part):
        return f"{spike} spikes, {_alignment(aligned)}"

    return _panels(profile, "spikes", spikes, metric, metric, title, height=3.0)


def study_profiles_figure(data: pd.DataFrame, metric: str = "error"):
    """A profile averaged over pairs against ``t``: one row per pair kind, one column per
    alignment, one colour per path, solid with BatchNorm statistics recomputed and dotted
    interpolated, the band the interval given.

    Args:
        data: One row per ``kind``, ``aligned``, ``path``, ``bn`` and ``t``, with ``n`` pairs,
            their ``mean`` and ``ci_low``/``ci_high``.
        metric: The profile's name, for the axis label.
    """
    apply_style()

    def title(kind, aligned, part):
        pairs = int(part.n.max()) if len(part) else 0
        return f"{kind.replace('_', '↔')}, {_alignment(aligned)} ({pairs} pairs)"

    return _panels(data, "kind", list(dict.fromkeys(data.kind)), "mean", metric, title, height=2.8)

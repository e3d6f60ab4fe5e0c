"""Loss along the paths between two minima (the connectivity profile of ``analysis/connect.py``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from analysis.plots.style import COLORS, apply_style

__all__ = ["plot_profiles", "study_profiles_figure"]

_PATH_COLORS = {"line": COLORS["grey"], "bezier": COLORS["tet"], "polychain": COLORS["sdt"]}
_BN_STYLES = {"recomputed": "-", "interpolated": ":"}


def plot_profiles(profile: pd.DataFrame, metric: str = "l_sdt"):
    """``metric`` against ``t``: one panel per spike kind (rows) and alignment (columns), one
    colour per path, solid with BatchNorm statistics recomputed, dotted interpolated.

    Args:
        profile: Rows of ``analysis.connectivity.PROFILE_COLUMNS``.
        metric: ``l_sdt``, ``l_tet``, ``error`` or ``firing_rate``.
    """
    apply_style()
    spikes = sorted(set(profile.spikes), key=["hard", "smooth"].index)
    aligned = sorted(set(profile.aligned))
    figure, axes = plt.subplots(
        len(spikes), len(aligned), figsize=(4.2 * len(aligned), 3.0 * len(spikes)), squeeze=False
    )
    for i, spike in enumerate(spikes):
        for j, is_aligned in enumerate(aligned):
            ax = axes[i][j]
            part = profile[(profile.spikes == spike) & (profile.aligned == is_aligned)]
            for (path, bn), rows in part.groupby(["path", "bn"], sort=False):
                rows = rows.sort_values("t")
                ax.plot(
                    rows.t,
                    rows[metric],
                    _BN_STYLES[bn],
                    color=_PATH_COLORS[path],
                    label=f"{path}, BN {bn}",
                )
            ax.set_title(f"{spike} spikes, {'aligned' if is_aligned else 'not aligned'}")
            ax.set_xlabel("t (A at 0, B at 1)")
            ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure


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
    kinds = list(dict.fromkeys(data.kind))
    aligned = sorted(set(data.aligned))
    figure, axes = plt.subplots(
        len(kinds), len(aligned), figsize=(4.2 * len(aligned), 2.8 * len(kinds)), squeeze=False
    )
    for i, kind in enumerate(kinds):
        for j, is_aligned in enumerate(aligned):
            ax = axes[i][j]
            part = data[(data.kind == kind) & (data.aligned == is_aligned)]
            for (path, bn), curve in part.groupby(["path", "bn"], sort=False):
                curve = curve.sort_values("t")
                color = _PATH_COLORS[path]
                ax.plot(
                    curve.t, curve["mean"], _BN_STYLES[bn], color=color, label=f"{path}, BN {bn}"
                )
                ax.fill_between(curve.t, curve.ci_low, curve.ci_high, color=color, alpha=0.15, lw=0)
            pairs = int(part.n.max()) if len(part) else 0
            title = f"{kind.replace('_', '↔')}, {'aligned' if is_aligned else 'not aligned'}"
            ax.set_title(f"{title} ({pairs} pairs)")
            ax.set_xlabel("t (A at 0, B at 1)")
            ax.set_ylabel(metric)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure

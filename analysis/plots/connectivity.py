"""Loss along the paths between two minima (the connectivity profile of ``analysis/connect.py``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from analysis.plots.style import COLORS, apply_style

__all__ = ["plot_profiles"]

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

"""Figures of the evidence study (data frames in, figures out; no file reading, no computation).

- :func:`tau_figure`: Kendall's tau of every flatness measure with the generalization gap,
  overall, granulated (psi) and per hyper-parameter axis (a seaborn heat map);
- :func:`per_step_figure`: λ_max and trace of ``L_t = CE(O(t), y)`` against t at SDT and TET
  minima (mean and 95 % interval over seeds), L_SDT and L_TET as dashed lines;
- :func:`paired_figure`: per-seed TET - SDT differences in units of each metric's margin δ,
  with the 95 % interval of the mean; the band ``(-1, 1)`` is the equivalence region.

Each function returns ``(figure, plotted data)`` so the caller saves both.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd

from analysis.plots.style import COLORS, apply_style

__all__ = ["tau_figure", "per_step_figure", "paired_figure"]


@contextmanager
def _seeded_numpy(seed: int):
    """numpy's global generator seeded inside the block and restored after it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def tau_figure(table: pd.DataFrame):
    """Heat map: rows are measures, columns tau, psi and tau per axis."""
    import seaborn as sns

    apply_style()
    columns = ["tau", "psi", *[c for c in table.columns if c.startswith("tau_")]]
    data = table.set_index("measure")[columns]
    figure, axes = _plt().subplots(figsize=(1.1 * len(columns) + 3, 0.35 * len(data) + 1.5))
    sns.heatmap(
        data.astype(float),
        annot=True,
        fmt=".2f",
        vmin=-1,
        vmax=1,
        cmap="RdBu_r",
        ax=axes,
        cbar_kws={"label": "Kendall tau with the gap"},
    )
    axes.set(xlabel="", ylabel="", title=f"flatness vs generalization gap ({table.gap.iloc[0]})")
    figure.tight_layout()
    return figure, data.reset_index()


def per_step_figure(frame: pd.DataFrame):
    """λ_max and trace against t, one panel each; hue = the training method."""
    import seaborn as sns

    apply_style()
    steps = frame[frame.t.notna()]
    figure, axes = _plt().subplots(1, 2, figsize=(9, 3.5))
    palette = {"sdt": COLORS["sdt"], "tet": COLORS["tet"]}
    for axis, measure in zip(axes, ("lambda_max", "trace")):
        part = steps[steps.measure == measure]
        sns.lineplot(
            part,
            x="t",
            y="value",
            hue="method",
            palette=palette,
            marker="o",
            errorbar=("ci", 95),
            seed=0,
            ax=axis,
        )
        for method in ("sdt", "tet"):
            whole = frame[(frame.measure == measure) & (frame.method == method)]
            for loss, style in (("sdt", "--"), ("tet", ":")):
                value = whole[whole["loss"] == loss].value.mean()
                axis.axhline(value, color=palette[method], linestyle=style, linewidth=0.8)
        axis.set(
            xlabel="time step t (from 0)",
            ylabel=f"{measure} of L_t",
            title=f"{measure} (dashed L_SDT, dotted L_TET)",
        )
        axis.xaxis.set_major_locator(_plt().MaxNLocator(integer=True))
    figure.suptitle("MNIST-1D minima: curvature of each L_t = CE(O(t), y), mean and 95 % CI")
    figure.tight_layout()
    return figure, frame


def paired_figure(differences: pd.DataFrame, table: pd.DataFrame):
    """Per-seed differences / δ per metric (points), 95 % interval of the mean / δ (bars)."""
    import seaborn as sns

    apply_style()
    figure, axes = _plt().subplots(figsize=(7, 0.35 * table.metric.nunique() + 1.5))
    axes.axvspan(-1, 1, color=COLORS["grey"], alpha=0.2, label="|d| < δ")
    with _seeded_numpy(0):  # seaborn jitters the points with numpy's global generator
        sns.stripplot(
            differences,
            x="scaled",
            y="metric",
            hue="benchmark",
            dodge=True,
            size=3,
            ax=axes,
            alpha=0.7,
        )
    metrics = list(differences.metric.unique())
    benchmarks = list(differences.benchmark.unique())
    for _, row in table[table.metric.isin(metrics)].iterrows():
        b = benchmarks.index(row.benchmark) if row.benchmark in benchmarks else 0
        y = metrics.index(row.metric) - 0.4 + 0.8 * (b + 0.5) / len(benchmarks)
        axes.plot([row.ci_low / row.delta, row.ci_high / row.delta], [y, y], color="black")
    axes.axvline(0, color="black", linewidth=0.5)
    axes.set(
        xlabel="TET - SDT per seed, in units of δ",
        ylabel="",
        title="paired differences (bars: 95 % CI of the mean)",
    )
    figure.tight_layout()
    return figure, differences

"""Figures of the evidence study (data frames in, figures out; no file reading, no computation).

- :func:`forest_figure`: per-pair TET - SDT of every primary endpoint with its measurement error,
  the mean with its 95 % interval, and issue 12's one-draw result as a comparison row;
- :func:`heterogeneity_figure`: per metric, the spread of the paired differences over pairs
  against the measurement error of one difference (estimator or test set);
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

__all__ = [
    "forest_figure",
    "heterogeneity_figure",
    "tau_figure",
    "per_step_figure",
    "paired_figure",
]


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
    data = table.set_index("metric")[columns]
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


def per_step_figure(frame: pd.DataFrame, benchmark: str = "mnist1d"):
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
    figure.suptitle(f"{benchmark} minima: curvature of each L_t = CE(O(t), y), mean and 95 % CI")
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


def forest_figure(differences: pd.DataFrame, table: pd.DataFrame, one_draw: pd.DataFrame):
    """One panel per benchmark and primary endpoint: each pair's TET - SDT (± 1.96 measurement
    errors where known), the mean and its 95 % interval (black), the one-draw result (grey)."""
    apply_style()
    primary = table[table.family == "primary"]
    benchmarks = list(dict.fromkeys(primary.benchmark))
    metrics = list(dict.fromkeys(primary.metric))
    plt = _plt()
    figure, axes = plt.subplots(
        len(benchmarks),
        len(metrics),
        figsize=(4 * len(metrics), 0.18 * 24 * len(benchmarks) + 1),
        squeeze=False,
    )
    rows = []
    for i, benchmark in enumerate(benchmarks):
        for j, metric in enumerate(metrics):
            axis = axes[i][j]
            part = differences[
                (differences.benchmark == benchmark) & (differences.metric == metric)
            ]
            part = part.sort_values("pair")
            y = list(range(len(part), 0, -1))
            error = 1.96 * part.stderr.fillna(0.0)
            axis.errorbar(
                part.difference, y, xerr=error, fmt="o", color=COLORS["tet"], ms=3, lw=0.8
            )
            summary = primary[(primary.benchmark == benchmark) & (primary.metric == metric)]
            labels = [f"pair {p}" for p in part.pair]
            if not summary.empty:
                r = summary.iloc[0]
                axis.errorbar(
                    [r.mean_difference],
                    [-0.5],
                    xerr=[[r.mean_difference - r.ci_low], [r.ci_high - r.mean_difference]],
                    fmt="D",
                    color="black",
                    ms=5,
                )
                rows.append(
                    {
                        "benchmark": benchmark,
                        "metric": metric,
                        "row": "mean",
                        "difference": r.mean_difference,
                        "low": r.ci_low,
                        "high": r.ci_high,
                    }
                )
            old = (
                one_draw[(one_draw.benchmark == benchmark) & (one_draw.metric == metric)]
                if not one_draw.empty
                else one_draw
            )
            ticks = [*y, -0.5]
            labels = [*labels, "mean (95 % CI)"]
            if not old.empty:
                o = old.iloc[0]
                axis.errorbar(
                    [o.mean_difference],
                    [-1.5],
                    xerr=[[o.mean_difference - o.ci_low], [o.ci_high - o.mean_difference]],
                    fmt="s",
                    color=COLORS["grey"],
                    ms=5,
                )
                ticks, labels = [*ticks, -1.5], [*labels, "one draw (issue 12)"]
                rows.append(
                    {
                        "benchmark": benchmark,
                        "metric": metric,
                        "row": "one draw",
                        "difference": o.mean_difference,
                        "low": o.ci_low,
                        "high": o.ci_high,
                    }
                )
            for _, p in part.iterrows():
                rows.append(
                    {
                        "benchmark": benchmark,
                        "metric": metric,
                        "row": f"pair {p.pair}",
                        "difference": p.difference,
                        "low": p.difference - 1.96 * p.stderr,
                        "high": p.difference + 1.96 * p.stderr,
                    }
                )
            axis.axvline(0, color="black", linewidth=0.5)
            axis.set_yticks(ticks, labels, fontsize=6)
            axis.set(title=f"{benchmark}: {metric}", xlabel="TET - SDT")
    figure.tight_layout()
    return figure, pd.DataFrame(rows)


def heterogeneity_figure(table: pd.DataFrame):
    """Per metric with a measurement error: SD of the paired differences over pairs (y) against
    the RMS measurement error of one difference (x), log-log; below the dashed line measurement
    noise is more than half the spread (flagged)."""
    import seaborn as sns

    apply_style()
    data = table[(table.noise > 0) & (table.sd_difference > 0)].copy()
    figure, axis = _plt().subplots(figsize=(6.5, 5))
    if not data.empty:
        sns.scatterplot(
            data, x="noise", y="sd_difference", hue="benchmark", style="family", ax=axis
        )
        for _, r in data.iterrows():
            axis.annotate(r.metric, (r.noise, r.sd_difference), fontsize=5, alpha=0.7)
        low = min(data.noise.min(), data.sd_difference.min()) / 2
        high = max(data.noise.max(), data.sd_difference.max()) * 2
        axis.plot([low, high], [low, high], color="black", linewidth=0.6, label="spread = noise")
        axis.plot(
            [low, high],
            [2 * low, 2 * high],
            "--",
            color="black",
            linewidth=0.6,
            label="spread = 2 x noise",
        )
        axis.set(xscale="log", yscale="log")
    axis.set(
        xlabel="measurement error of one paired difference (RMS)",
        ylabel="SD of the paired differences over pairs",
        title="heterogeneity: pair-to-pair spread vs measurement noise",
    )
    axis.legend(fontsize=6)
    figure.tight_layout()
    columns = ["benchmark", "metric", "family", "noise", "sd_difference", "noise_share"]
    return figure, data[columns] if not data.empty else pd.DataFrame(columns=columns)

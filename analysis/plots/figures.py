"""The reproduction's figures: data frames and arrays in, ``(Figure, plotted data)`` out.

No file is read here (``analysis/evidence/artifacts.py`` reads them and
``analysis/evidence/figures.py`` joins the two), so every figure can be drawn from a notebook.
The returned frame is exactly the plotted data, saved next to the figure as CSV. SDT is always
blue and TET vermillion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from analysis.plots.style import LABELS, apply_style, color
from landscape.surface_io import Surface
from training.runs.config import TrainConfig

__all__ = [
    "flatness_figure",
    "hessian_figure",
    "interpolation_figure",
    "landscapes_figure",
    "momentum_figure",
    "sharpness_dynamics_figure",
    "switch_figure",
    "timesteps_figure",
    "tit_figure",
]

FigureResult = tuple[plt.Figure, pd.DataFrame]


def _mean_std(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(by)[value]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def switch_figure(data: pd.DataFrame, switch: int) -> FigureResult:
    """Fig. 3 analogue: SDT then TET; test accuracy and both test losses per epoch.

    Args:
        data: Per-epoch metrics with a ``run`` column (switch runs and the SDT-only baseline).
        switch: The epoch after which the switch run changed to TET.
    """
    apply_style()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, part in data.groupby("run"):
        is_switch = "switch" in name
        style = "-" if is_switch else ":"
        label = "SDT -> TET" if is_switch else "SDT only"
        axes[0].plot(
            part.epoch,
            part.test_acc,
            style,
            color=color("tet" if is_switch else "sdt"),
            label=label,
        )
        if is_switch:
            for loss in ("sdt", "tet"):
                axes[1].plot(
                    part.epoch,
                    part[f"test_l_{loss}"],
                    color=color(loss),
                    label=f"test L_{LABELS[loss]}",
                )
    for ax in axes:
        ax.axvline(switch + 0.5, color="k", lw=0.8, ls="--")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set(ylabel="test accuracy", title="accuracy")
    axes[1].set(ylabel="loss", title=f"losses of the switch run (switch after epoch {switch})")
    axes[0].legend()
    axes[1].legend()
    return figure, data[["run", "epoch", "method", "test_acc", "test_l_sdt", "test_l_tet"]]


def timesteps_figure(data: pd.DataFrame) -> FigureResult:
    """Fig. 4A analogue: accuracy against the test T for models trained at several T.

    Args:
        data: The rows of timesteps.csv.
    """
    data = data[~data.checkpoint.str.contains("switch|init")]
    summary = _mean_std(data, ["method", "train_T", "T"], "acc")
    apply_style()
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    styles = dict(zip(sorted(summary.train_T.unique()), ["-", "--", ":", "-."] * 3))
    for (method, train_T), part in summary.groupby(["method", "train_T"]):
        ax.errorbar(
            part["T"],
            part["mean"],
            yerr=part["std"].fillna(0),
            ls=styles[train_T],
            marker="o",
            ms=3,
            capsize=2,
            color=color(method),
            label=f"{LABELS[method]}, trained at T={train_T}",
        )
    ax.set(
        xlabel="time steps at test",
        ylabel="test accuracy",
        title="temporal scalability (mean ± std over seeds)",
    )
    ax.legend(fontsize=7)
    return figure, summary


def tit_figure(data: pd.DataFrame) -> FigureResult:
    """TIT vs training from scratch: accuracy against cost (time steps x epochs, in t_s).

    Args:
        data: ``artifacts.tit_rows``, with at least one TIT run.
    """
    target_T = data[data.kind == "TIT"]["T"].iloc[0]
    data = data[(data["T"] == target_T) & (data.method == "tet")]
    apply_style()
    figure, ax = plt.subplots(figsize=(5, 3.6))
    # Seeds share the cost: spread them by +-3% so that each seed is a dot; bars: mean +- std.
    rank = data.groupby(["kind", "cost"]).cumcount()
    size = data.groupby(["kind", "cost"]).cost.transform("size")
    data = data.assign(plotted_cost=data.cost * (1 + 0.03 * (rank - (size - 1) / 2)))
    for kind, marker in (("scratch", "o"), ("TIT", "s")):
        part = data[data.kind == kind]
        if len(part) > 1:
            ax.errorbar(
                part.cost.mean(),
                part.test_acc.mean(),
                yerr=part.test_acc.std(),
                color="k",
                capsize=4,
                lw=1,
                zorder=1,
            )
        ax.scatter(
            part.plotted_cost,
            part.test_acc,
            marker=marker,
            color=color("tet"),
            alpha=0.8,
            facecolors="none" if kind == "TIT" else color("tet"),
            label=f"{kind} ({len(part)} seeds)",
        )
    ax.set(
        xlabel="training cost (time steps x epochs; seeds spread by +-3%, bar: mean +- std)",
        ylabel="test accuracy",
        title=f"TET at T={target_T}: TIT vs from scratch",
    )
    ax.legend()
    return figure, data


def momentum_figure(data: pd.DataFrame) -> FigureResult:
    """Gradient-momentum statistics: per-step error norms and gradient norms against the epoch.

    Args:
        data: gradient_stats.csv rows of the main runs, with ``method`` and ``seed`` columns.
    """
    apply_style()
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    last = data[data.epoch == data.epoch.max()]
    errors = last[last.quantity == "error_norm"]
    summary = _mean_std(errors, ["method", "loss", "t"], "value").assign(panel="error_norm")
    for (method, loss), part in summary.groupby(["method", "loss"]):
        axes[0].errorbar(
            part.t,
            part["mean"],
            yerr=part["std"].fillna(0),
            color=color(loss),
            ls="-" if method == "sdt" else "--",
            marker="o" if method == "sdt" else "s",
            capsize=2,
            label=f"{LABELS[loss]} term @ {LABELS[method]} minimum",
        )
    axes[0].set(
        xlabel="time step t (0-based, as in the CSVs)",
        ylabel="||e_t|| (mean over samples)",
        title="error terms at the final weights",
    )
    curves = []
    for ax, quantity, ylabel in (
        (axes[1], "grad_norm", "||dL/dW||"),
        (axes[2], "momentum_norm", "optimizer first-moment norm"),
    ):
        part = data[data.quantity == quantity]
        if quantity == "grad_norm":
            curve = _mean_std(part, ["method", "loss", "epoch"], "value")
        else:
            curve = _mean_std(part, ["method", "epoch"], "value").assign(loss="")
        curves.append(curve.assign(panel=quantity))
        for (method, loss), group in curve.groupby(["method", "loss"]):
            label = f"{LABELS[method]} run" + (f", {LABELS[loss]} loss" if loss else "")
            ax.plot(
                group.epoch,
                group["mean"],
                "-" if loss in ("", method) else ":",
                color=color(method),
                label=label,
            )
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.legend(fontsize=7)
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_title("gradient norms (mean over seeds)")
    axes[2].set_title("optimizer momentum")
    return figure, pd.concat([summary, *curves], ignore_index=True)


def landscapes_figure(surfaces: dict[str, Surface]) -> FigureResult:
    """Fig. 2 analogue: 2-D landscapes, minimum found by SDT/TET x loss L_SDT/L_TET, one scale.

    Args:
        surfaces: The 2-D surfaces around the ``sdt`` and the ``tet`` minimum.
    """
    values = [s.values[f"l_{loss}"] for s in surfaces.values() for loss in ("sdt", "tet")]
    low, high = min(v.min() for v in values), min(max(v.max() for v in values), 5.0)
    levels = np.linspace(low, high, 25)
    extend = "max" if max(v.max() for v in values) > high else "neither"
    apply_style()
    figure, axes = plt.subplots(2, 2, figsize=(8.5, 7.5), sharex=True, sharey=True)
    frames = []
    for row, (method, surface) in enumerate(surfaces.items()):
        x, y = surface.axes
        for col, loss in enumerate(("sdt", "tet")):
            z = np.minimum(surface.values[f"l_{loss}"], high)
            ax = axes[row, col]
            filled = ax.contourf(x, y, z.T, levels=levels, cmap="viridis", extend=extend)
            ax.contour(x, y, z.T, levels=levels[::3], colors="w", linewidths=0.4)
            ax.plot(0, 0, "r+", ms=10)
            ax.set_title(f"{LABELS[method]} minimum, L_{LABELS[loss]}")
            ax.grid(False)
            frame = surface.frame()
            frame = frame[frame.metric == f"l_{loss}"].assign(minimum=method, loss=loss)
            frames.append(frame.assign(plotted_value=np.minimum(frame.value, high)))
    for ax in axes[1]:
        ax.set_xlabel("direction 1 (filter-normalized)")
    for ax in axes[:, 0]:
        ax.set_ylabel("direction 2")
    clipped = f"; values above {high:.3g} clipped (arrow)" if extend == "max" else ""
    figure.colorbar(
        filled, ax=axes, shrink=0.8, label=f"loss (shared scale{clipped})", ticks=MaxNLocator(8)
    )
    return figure, pd.concat(frames, ignore_index=True)


def interpolation_figure(surface: Surface) -> FigureResult:
    """1-D interpolation between the SDT (alpha = 0) and TET (alpha = 1) minima, both losses."""
    alpha = surface.axes[0]
    apply_style()
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    for loss in ("sdt", "tet"):
        ax.plot(alpha, surface.values[f"l_{loss}"], color=color(loss), label=f"L_{LABELS[loss]}")
    ax.set(
        xlabel="alpha (0: SDT minimum, 1: TET minimum)",
        ylabel="loss",
        title="interpolation between the minima (seed 0)",
    )
    if "accuracy" in surface.values:
        twin = ax.twinx()
        twin.plot(alpha, surface.values["accuracy"], color="k", ls=":", label="accuracy")
        twin.set_ylabel("accuracy")
        twin.grid(False)
    ax.legend(loc="upper center")
    frame = surface.frame()
    return figure, frame[frame.metric.isin(["l_sdt", "l_tet", "accuracy"])]


def hessian_figure(frames: list[pd.DataFrame], densities: list[tuple] | None) -> FigureResult:
    """Hessian: top eigenvalues and trace (mean ± std over seeds), SDT vs TET; densities.

    Args:
        frames: hessian.csv rows (with ``run``, ``method`` and ``loss`` columns) per loss.
        densities: ``(method, grid, density)`` per checkpoint, or None without densities.
    """
    data = pd.concat(frames)
    apply_style()
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    top = data[data.quantity == "top_eigenvalue"]
    summary = _mean_std(top, ["loss", "method", "index"], "value").assign(quantity="top_eigenvalue")
    for (loss, method), part in summary.groupby(["loss", "method"]):
        axes[0].errorbar(
            part["index"] + 1,
            part["mean"],
            yerr=part["std"].fillna(0),
            capsize=2,
            color=color(method),
            ls="-" if loss == "sdt" else "--",
            marker="o",
            label=f"{LABELS[method]} minimum, H of L_{LABELS[loss]}",
        )
    axes[0].set(xlabel="eigenvalue rank", ylabel="eigenvalue", title="top Hessian eigenvalues")
    axes[0].legend(fontsize=7)
    trace = _mean_std(data[data.quantity == "trace"], ["loss", "method"], "value")
    positions = np.arange(len(trace))
    axes[1].bar(
        positions,
        trace["mean"],
        yerr=trace["std"].fillna(0),
        capsize=3,
        color=[color(m) for m in trace.method],
        alpha=0.85,
    )
    axes[1].set_xticks(
        positions, [f"{LABELS[m]}\nL_{LABELS[lo]}" for lo, m in zip(trace.loss, trace.method)]
    )
    axes[1].set(ylabel="trace (Hutch++)", title="Hessian trace")
    _densities(densities, axes[2])
    return figure, pd.concat([summary, trace.assign(quantity="trace")], ignore_index=True)


def _densities(densities: list[tuple] | None, ax) -> None:
    if densities is None:
        ax.set_title("density: run hessian.py with --density")
        return
    labelled = set()
    for method, grid, density in densities:
        label = None if method in labelled else f"{LABELS.get(method, method)} runs"
        labelled.add(method)
        ax.semilogy(
            grid, np.maximum(density, 1e-8), color=color(method), alpha=0.6, lw=1, label=label
        )
    ax.legend(fontsize=7)
    ax.set(
        xlabel="eigenvalue",
        ylabel="density (SLQ)",
        title="spectral densities, H of L_TET",
        ylim=(1e-6, None),
    )


FLATNESS_LABELS = {
    "lambda_max_sdt": "top Hessian eigenvalue of L_SDT",
    "trace_sdt": "Hessian trace of L_SDT",
    "eps_sharpness_l_sdt": "epsilon-sharpness of L_SDT (%)",
    "gap": "generalization gap (train - test accuracy)",
    "test_acc": "test accuracy",
}


def flatness_figure(table: pd.DataFrame, columns: list[str]) -> FigureResult:
    """Flatness vs generalization: ``columns`` (lambda_max, trace, eps-sharpness) against the
    generalization gap and the test accuracy, one point per run of ``artifacts.run_table``."""
    apply_style()
    figure, axes = plt.subplots(2, len(columns), figsize=(4 * len(columns), 6.5), squeeze=False)
    for j, column in enumerate(columns):
        for i, target in enumerate(("gap", "test_acc")):
            ax = axes[i, j]
            for method, part in table.groupby("method"):
                ax.scatter(part[column], part[target], color=color(method), label=LABELS[method])
            ax.set(xlabel=FLATNESS_LABELS.get(column, column), ylabel=FLATNESS_LABELS[target])
    axes[0, 0].legend()
    return figure, table


def sharpness_dynamics_figure(data: pd.DataFrame, configs: dict[str, TrainConfig]) -> FigureResult:
    """lambda_max of the per-epoch checkpoints along training, SDT vs TET (2/lr line for SGD).

    Args:
        data: hessian.csv rows of the per-epoch checkpoints (``artifacts.hessian_frame``).
        configs: Run name -> its config (optimizer, lr).
    """
    data = data[(data.quantity == "top_eigenvalue") & (data["index"] == 0)].copy()
    data["epoch"] = data.checkpoint.str.extract(r"epoch_(\d+)\.pt").astype(float)
    apply_style()
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    for (run, method), part in data.groupby(["run", "method"]):
        part = part.sort_values("epoch")
        ax.plot(part.epoch, part.value, marker="o", color=color(method), label=LABELS[method])
        config = configs[run]
        if config.optimizer == "sgd":
            ax.axhline(2 / config.lr, color=color(method), ls=":", label="2/lr (SGD stability)")
    ax.set(
        xlabel="epoch",
        ylabel="top eigenvalue of the training loss's Hessian",
        title="sharpness along training (seed 0)",
    )
    ax.legend()
    return figure, data[["run", "method", "epoch", "value"]]

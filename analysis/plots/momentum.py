"""Figures of the gradient-momentum statistics (data frames in, matplotlib figures out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.ticker import MaxNLocator

from analysis.plots.style import LABELS, apply_style, color, save_figure

# Time steps are 0-based everywhere: t in gradient_stats.csv, momentum.csv, --time-step, plots.
T_LABEL = "time step t (0-based, as in the CSVs)"

__all__ = ["error_norm_figure", "gcos_figure", "epoch_figure", "save_momentum_figures"]


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("value", "epoch"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _last_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    last = frame.groupby("source").epoch.transform("max")
    return frame[frame.epoch == last]


def error_norm_figure(frame: pd.DataFrame):
    """Per-step error-term norms (SDT's shared term vs TET's own) at each source's last epoch."""
    apply_style()
    data = _last_epoch(_numeric(frame))
    data = data[data.quantity.isin(["error_norm", "g_norm"])]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    titles = ("error term ||e_t|| (mean over samples)", "||g_t||")
    for ax, quantity, title in zip(axes, ("error_norm", "g_norm"), titles):
        for (source, method, loss), part in data[data.quantity == quantity].groupby(
            ["source", "method", "loss"]
        ):
            t = pd.to_numeric(part.t)
            style = "-" if loss == "sdt" else "--"
            marker = "o" if str(method).startswith("sdt") else "s"
            ax.plot(
                t,
                part.value,
                style,
                marker=marker,
                color=color(loss),
                label=f"{LABELS.get(loss, loss)} loss @ {method} weights",
            )
        ax.set(title=title, xlabel=T_LABEL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(loc="best", fontsize=7)
    return figure


def gcos_figure(frame: pd.DataFrame, source: str | None = None):
    """Cosine similarity between the per-step gradient parts g_t, for both losses."""
    apply_style()
    data = _last_epoch(_numeric(frame))
    source = source or data.source.iloc[0]
    data = data[(data.source == source) & (data.quantity == "g_cos")]
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, loss in zip(axes, ("sdt", "tet")):
        part = data[data.loss == loss]
        T = int(pd.to_numeric(part.t).max()) + 1
        matrix = np.full((T, T), np.nan)
        matrix[pd.to_numeric(part.t).astype(int), pd.to_numeric(part.s).astype(int)] = part.value
        image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set(title=f"cos(g_t, g_s), {LABELS[loss]} loss", xlabel="s (0-based)", ylabel=T_LABEL)
        ax.set_xticks(range(T), range(T))
        ax.set_yticks(range(T), range(T))
        ax.grid(False)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def epoch_figure(frame: pd.DataFrame, quantity: str, ylabel: str, by_loss: bool = True):
    """A logged quantity against the epoch, one line per run (and loss)."""
    apply_style()
    data = _numeric(frame)
    data = data[data.quantity == quantity]
    figure, ax = plt.subplots(figsize=(5.5, 3.6))
    groups = ["source", "method", "loss"] if by_loss else ["source", "method"]
    for key, part in data.groupby(groups):
        method = key[1]
        loss = key[2] if by_loss else ""
        style = "--" if by_loss and loss == "tet" else "-"
        label = f"{method} run" + (f", {LABELS.get(loss, loss)} loss" if by_loss else "")
        ax.plot(
            part.epoch,
            part.value,
            style,
            color=color(method.split("->")[0]),
            label=label,
            alpha=0.85,
        )
    ax.set(xlabel="epoch", ylabel=ylabel)
    ax.legend(fontsize=7)
    return figure


def save_momentum_figures(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Write every momentum figure that the data supports (PNG + PDF)."""
    written = save_figure(error_norm_figure(frame), out / "momentum_error_norms")
    written += save_figure(gcos_figure(frame), out / "momentum_gcos")
    if _numeric(frame).epoch.nunique() > 1:
        written += save_figure(
            epoch_figure(frame, "grad_norm", "||dL/dW||"), out / "momentum_grad_norm_vs_epoch"
        )
        if (frame.quantity == "momentum_norm").any():
            figure = epoch_figure(frame, "momentum_norm", "optimizer momentum norm", by_loss=False)
            written += save_figure(figure, out / "momentum_buffer_vs_epoch")
    return written

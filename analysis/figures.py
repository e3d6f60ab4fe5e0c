"""Regenerate every figure of the reproduction from saved artifacts only.

Each figure is written as PNG and PDF with a CSV of exactly the plotted data. Nothing expensive is
computed here: a missing artifact is reported with the command that makes it, and the other
figures are still drawn. SDT is always blue and TET vermillion (colour-blind-safe palette).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from analysis.artifacts import ANALYSIS, MissingArtifact, find_runs, main_runs, read_csv
from analysis.style import LABELS, apply_style, color, save_figure
from training.config import ArgumentParser

__all__ = ["FIGURES", "build_parser", "main"]

FigureResult = tuple[plt.Figure, pd.DataFrame]


def _mean_std(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(by)[value]
    return grouped.agg(["mean", "std", "count"]).reset_index()


def fig_switch(root: Path) -> FigureResult:
    """Fig. 3 analogue: SDT then TET; test accuracy and both test losses per epoch."""
    runs = [run for run in find_runs(root) if run.role == "switch"]
    if not runs:
        raise MissingArtifact(
            f"no switch run under {root}; make one with: python training/run.py --method sdt "
            f"--switch-to-tet-at 10 --out {root}"
        )
    data = pd.concat([run.metrics().assign(run=run.path.name) for run in runs])
    baseline = [
        r for r in main_runs(find_runs(root)) if r.method == "sdt" and r.seed == runs[0].seed
    ]
    if baseline:
        data = pd.concat([data, baseline[0].metrics().assign(run=baseline[0].path.name)])
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
    switch = runs[0].config["switch_to_tet_at"]
    for ax in axes:
        ax.axvline(switch + 0.5, color="k", lw=0.8, ls="--")
        ax.set_xlabel("epoch")
    axes[0].set(ylabel="test accuracy", title="accuracy")
    axes[1].set(ylabel="loss", title=f"losses of the switch run (switch after epoch {switch})")
    axes[0].legend()
    axes[1].legend()
    return figure, data[["run", "epoch", "method", "test_acc", "test_l_sdt", "test_l_tet"]]


def fig_timesteps(root: Path) -> FigureResult:
    """Fig. 4A analogue: accuracy against the test T for models trained at several T."""
    data = read_csv(
        root / ANALYSIS / "timesteps" / "timesteps.csv",
        f"python analysis/timesteps.py {root}/*/last.pt --out {root}/{ANALYSIS}/timesteps",
    )
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


def _tit_rows(root: Path) -> pd.DataFrame:
    runs = find_runs(root)
    rows = []
    for run in runs:
        last = run.metrics().iloc[-1]
        cost = run.T * len(run.metrics())
        kind = "scratch"
        if run.role == "tit":
            source = Path(run.config["init_from"]).parent
            parent = next((r for r in runs if r.path.name == source.name), None)  # moved too
            cost += parent.T * len(parent.metrics()) if parent else 0
            kind = "TIT"
        elif run.role != "plain":
            continue
        rows.append(
            {
                "run": run.path.name,
                "kind": kind,
                "method": run.method,
                "T": run.T,
                "seed": run.seed,
                "cost": cost,
                "test_acc": last.test_acc,
            }
        )
    return pd.DataFrame(rows)


def fig_tit(root: Path) -> FigureResult:
    """TIT vs training from scratch: accuracy against cost (time steps x epochs, in t_s)."""
    data = _tit_rows(root)
    if not (data.kind == "TIT").any():
        raise MissingArtifact(
            f"no TIT run under {root}; make one with: python training/run.py --T 6 --init-from "
            f"{root}/<T2 run>/last.pt --epochs 3 --out {root}"
        )
    target_T = data[data.kind == "TIT"]["T"].iloc[0]
    data = data[(data["T"] == target_T) & (data.method == "tet")]
    apply_style()
    figure, ax = plt.subplots(figsize=(5, 3.6))
    for kind, marker in (("scratch", "o"), ("TIT", "s")):
        part = data[data.kind == kind]
        ax.scatter(
            part.cost,
            part.test_acc,
            marker=marker,
            color=color("tet"),
            alpha=0.8,
            facecolors="none" if kind == "TIT" else color("tet"),
            label=kind,
        )
    ax.set(
        xlabel="training cost (time steps x epochs)",
        ylabel="test accuracy",
        title=f"TET at T={target_T}: TIT vs from scratch",
    )
    ax.legend()
    return figure, data


def fig_momentum(root: Path) -> FigureResult:
    """Gradient-momentum statistics: per-step error norms and gradient norms against the epoch."""
    runs = main_runs(find_runs(root))
    frames = []
    for run in runs:
        stats = read_csv(
            run.path / "gradient_stats.csv", "python training/run.py (--gradient-stats)"
        )
        frames.append(stats.assign(method=run.method, seed=run.seed))
    data = pd.concat(frames)
    apply_style()
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    last = data[data.epoch == data.epoch.max()]
    errors = last[last.quantity == "error_norm"]
    summary = _mean_std(errors, ["method", "loss", "t"], "value").assign(panel="error_norm")
    for (method, loss), part in summary.groupby(["method", "loss"]):
        axes[0].errorbar(
            part.t + 1,
            part["mean"],
            yerr=part["std"].fillna(0),
            color=color(loss),
            ls="-" if method == "sdt" else "--",
            marker="o" if method == "sdt" else "s",
            capsize=2,
            label=f"{LABELS[loss]} term @ {LABELS[method]} minimum",
        )
    axes[0].set(
        xlabel="time step t",
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
    axes[1].set_title("gradient norms (mean over seeds)")
    axes[2].set_title("optimizer momentum")
    return figure, pd.concat([summary, *curves], ignore_index=True)


def _surface(root: Path, name: str):
    from landscape.surface import load_surface

    folder = root / ANALYSIS / "surface" / name
    found = sorted(folder.glob("surface_*.json"))
    if not found:
        raise MissingArtifact(
            f"no surface in {folder}; make it with: python analysis/surface.py CKPT --out {folder}"
        )
    return load_surface(found[0])


def fig_landscapes(root: Path) -> FigureResult:
    """Fig. 2 analogue: 2-D landscapes, minimum found by SDT/TET x loss L_SDT/L_TET, one scale."""
    surfaces = {method: _surface(root, method) for method in ("sdt", "tet")}
    values = [s.values[f"l_{loss}"] for s in surfaces.values() for loss in ("sdt", "tet")]
    low, high = min(v.min() for v in values), min(max(v.max() for v in values), 5.0)
    levels = np.linspace(low, high, 25)
    apply_style()
    figure, axes = plt.subplots(2, 2, figsize=(8.5, 7.5), sharex=True, sharey=True)
    frames = []
    for row, (method, surface) in enumerate(surfaces.items()):
        x, y = surface.axes
        for col, loss in enumerate(("sdt", "tet")):
            z = np.minimum(surface.values[f"l_{loss}"], high)
            ax = axes[row, col]
            filled = ax.contourf(x, y, z.T, levels=levels, cmap="viridis")
            ax.contour(x, y, z.T, levels=levels[::3], colors="w", linewidths=0.4)
            ax.plot(0, 0, "r+", ms=10)
            ax.set_title(f"{LABELS[method]} minimum, L_{LABELS[loss]}")
            ax.grid(False)
            frame = surface.frame()
            frames.append(frame[frame.metric == f"l_{loss}"].assign(minimum=method, loss=loss))
    for ax in axes[1]:
        ax.set_xlabel("direction 1 (filter-normalized)")
    for ax in axes[:, 0]:
        ax.set_ylabel("direction 2")
    figure.colorbar(filled, ax=axes, shrink=0.8, label="loss (shared scale)")
    return figure, pd.concat(frames, ignore_index=True)


def fig_interpolation(root: Path) -> FigureResult:
    """1-D interpolation between the SDT (alpha = 0) and TET (alpha = 1) minima, both losses."""
    surface = _surface(root, "interp")
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


def _hessian_frame(root: Path, folder: str) -> pd.DataFrame:
    frame = read_csv(
        root / ANALYSIS / folder / "hessian.csv",
        f"python analysis/hessian.py CKPTS --out {root}/{ANALYSIS}/{folder}",
    )
    runs = {run.path.name: run for run in find_runs(root)}
    frame["run"] = frame.checkpoint.map(lambda p: Path(p).parent.name)
    frame["method"] = frame.run.map(lambda r: runs[r].method if r in runs else "?")
    return frame


def fig_hessian(root: Path) -> FigureResult:
    """Hessian: top eigenvalues and trace (mean ± std over seeds), SDT vs TET; densities."""
    frames = [_hessian_frame(root, f"hessian_{loss}").assign(loss=loss) for loss in ("sdt", "tet")]
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
    _densities(root, axes[2])
    return figure, pd.concat([summary, trace.assign(quantity="trace")], ignore_index=True)


def _densities(root: Path, ax) -> None:
    import json

    folder = root / ANALYSIS / "hessian_tet"
    if not (folder / "hessian.npz").is_file():
        ax.set_title("density: run hessian.py with --density")
        return
    records = json.loads((folder / "hessian.json").read_text())["results"]
    arrays = np.load(folder / "hessian.npz")
    runs = {run.path.name: run for run in find_runs(root)}
    for i, record in enumerate(records):
        method = runs[record["name"]].method if record["name"] in runs else "other"
        ax.semilogy(
            arrays[f"{i}/grid"],
            np.maximum(arrays[f"{i}/density"], 1e-8),
            color=color(method),
            alpha=0.6,
            lw=1,
        )
    ax.set(
        xlabel="eigenvalue",
        ylabel="density (SLQ)",
        title="spectral densities, H of L_TET",
        ylim=(1e-6, None),
    )


def fig_flatness(root: Path) -> FigureResult:
    """Flatness vs generalization: lambda_max, trace, eps-sharpness against gap and accuracy."""
    from analysis.report import run_table

    table = run_table(root)
    columns = [c for c in ("lambda_max_sdt", "trace_sdt", "eps_sharpness_l_sdt") if c in table]
    if not columns or table[columns].isna().all().all():
        raise MissingArtifact("no Hessian or sharpness results; run the demo's analysis stages")
    apply_style()
    figure, axes = plt.subplots(2, len(columns), figsize=(4 * len(columns), 6.5), squeeze=False)
    for j, column in enumerate(columns):
        for i, target in enumerate(("gap", "test_acc")):
            ax = axes[i, j]
            for method, part in table.groupby("method"):
                ax.scatter(part[column], part[target], color=color(method), label=LABELS[method])
            ax.set(xlabel=column.replace("_", " "), ylabel=target.replace("_", " "))
    axes[0, 0].legend()
    return figure, table


def fig_sharpness_dynamics(root: Path) -> FigureResult:
    """lambda_max of the per-epoch checkpoints along training, SDT vs TET (2/lr line for SGD)."""
    data = _hessian_frame(root, "hessian_epochs")
    data = data[(data.quantity == "top_eigenvalue") & (data["index"] == 0)].copy()
    data["epoch"] = data.checkpoint.str.extract(r"epoch_(\d+)\.pt").astype(float)
    runs = {run.path.name: run for run in find_runs(root)}
    apply_style()
    figure, ax = plt.subplots(figsize=(5.5, 3.8))
    for (run, method), part in data.groupby(["run", "method"]):
        part = part.sort_values("epoch")
        ax.plot(part.epoch, part.value, marker="o", color=color(method), label=LABELS[method])
        config = runs[run].config
        if config["optimizer"] == "sgd":
            ax.axhline(2 / config["lr"], color=color(method), ls=":", label="2/lr (SGD stability)")
    ax.set(
        xlabel="epoch",
        ylabel="top eigenvalue of the training loss's Hessian",
        title="sharpness along training (seed 0)",
    )
    ax.legend()
    return figure, data[["run", "method", "epoch", "value"]]


FIGURES: dict[str, Callable[[Path], FigureResult]] = {
    "fig1_interpolation": fig_interpolation,
    "fig2_landscapes": fig_landscapes,
    "fig3_hessian": fig_hessian,
    "fig4_flatness_vs_generalization": fig_flatness,
    "fig5_switch": fig_switch,
    "fig6_timesteps": fig_timesteps,
    "fig7_tit": fig_tit,
    "fig8_momentum": fig_momentum,
    "fig9_sharpness_dynamics": fig_sharpness_dynamics,
}


def build_parser():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--runs", default="runs", help="runs folder (default: %(default)s)")
    parser.add_argument("--out", default="figures", help="output folder (default: %(default)s)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="draw only these")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root, out, missing = Path(args.runs), Path(args.out), 0
    for name in args.only or FIGURES:
        try:
            figure, data = FIGURES[name](root)
        except MissingArtifact as error:
            print(f"{name}: skipped: {error}", file=sys.stderr)
            missing += 1
            continue
        save_figure(figure, out / name)
        data.to_csv(out / f"{name}.csv", index=False)
        print(f"{name}: wrote {out / name}.png/.pdf/.csv", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate every figure of the reproduction from saved artifacts only.

Each figure is written as PNG and PDF with a CSV of exactly the plotted data. Nothing expensive is
computed here: a missing artifact is reported with the command that makes it, and the other
figures are still drawn. SDT is always blue and TET vermillion (colour-blind-safe palette).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from analysis import artifacts
from analysis import plots_figures as plots
from analysis.artifacts import MissingArtifact, find_runs, main_runs
from analysis.style import save_figure
from training.config import ArgumentParser

__all__ = ["FIGURES", "build_parser", "main"]


def fig_switch(root: Path) -> plots.FigureResult:
    """Fig. 3 analogue: SDT then TET; test accuracy and both test losses per epoch."""
    return plots.switch_figure(*artifacts.switch_metrics(root))


def fig_timesteps(root: Path) -> plots.FigureResult:
    """Fig. 4A analogue: accuracy against the test T for models trained at several T."""
    return plots.timesteps_figure(artifacts.timesteps_table(root))


def fig_tit(root: Path) -> plots.FigureResult:
    """TIT vs training from scratch: accuracy against cost (time steps x epochs, in t_s)."""
    data = artifacts.tit_rows(root)
    if not (data.kind == "TIT").any():
        raise MissingArtifact(
            f"no TIT run under {root}; make one with: python training/run.py --T 6 --init-from "
            f"{root}/<T2 run>/last.pt --epochs 3 --out {root}"
        )
    return plots.tit_figure(data)


def fig_momentum(root: Path) -> plots.FigureResult:
    """Gradient-momentum statistics: per-step error norms and gradient norms against the epoch."""
    runs = main_runs(find_runs(root))
    frames = artifacts.gradient_stats(runs, "python training/run.py (--gradient-stats)")
    data = pd.concat(
        [stats.assign(method=run.method, seed=run.seed) for run, stats in zip(runs, frames)]
    )
    return plots.momentum_figure(data)


def fig_landscapes(root: Path) -> plots.FigureResult:
    """Fig. 2 analogue: 2-D landscapes, minimum found by SDT/TET x loss L_SDT/L_TET, one scale."""
    return plots.landscapes_figure({m: artifacts.surface(root, m) for m in ("sdt", "tet")})


def fig_interpolation(root: Path) -> plots.FigureResult:
    """1-D interpolation between the SDT (alpha = 0) and TET (alpha = 1) minima, both losses."""
    return plots.interpolation_figure(artifacts.surface(root, "interp"))


def fig_hessian(root: Path) -> plots.FigureResult:
    """Hessian: top eigenvalues and trace (mean ± std over seeds), SDT vs TET; densities."""
    frames = [
        artifacts.hessian_frame(root, f"hessian_{loss}").assign(loss=loss)
        for loss in ("sdt", "tet")
    ]
    return plots.hessian_figure(frames, artifacts.hessian_densities(root))


def fig_flatness(root: Path) -> plots.FigureResult:
    """Flatness vs generalization: lambda_max, trace, eps-sharpness against gap and accuracy."""
    table = artifacts.run_table(root)
    columns = [c for c in ("lambda_max_sdt", "trace_sdt", "eps_sharpness_l_sdt") if c in table]
    if not columns or table[columns].isna().all().all():
        raise MissingArtifact("no Hessian or sharpness results; run the demo's analysis stages")
    return plots.flatness_figure(table, columns)


def fig_sharpness_dynamics(root: Path) -> plots.FigureResult:
    """lambda_max of the per-epoch checkpoints along training, SDT vs TET (2/lr line for SGD)."""
    data = artifacts.hessian_frame(root, "hessian_epochs")
    configs = {run.path.name: run.config for run in find_runs(root)}
    return plots.sharpness_dynamics_figure(data, configs)


FIGURES: dict[str, Callable[[Path], plots.FigureResult]] = {
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
    parser = ArgumentParser(
        description=__doc__,
        epilog="example:\n  python analysis/figures.py --runs runs --only fig2_landscapes\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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

"""The reproduction's figures: each reads its artifacts and hands them to a drawing function.

:data:`FIGURES` maps a figure's name to ``layout -> (Figure, plotted data)``; the drawing lives
in :mod:`analysis.plots.figures` (frames in, figures out), the reading in
:mod:`analysis.evidence.artifacts`. A missing artifact raises ``MissingArtifact`` naming the
command that makes it.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from analysis.evidence import artifacts
from analysis.evidence.artifacts import MissingArtifact, find_runs, main_runs
from analysis.plots import figures as plots
from training.runs.layout import RunLayout

__all__ = ["FIGURES", "REPORT_ORDER"]


def fig_switch(layout: RunLayout) -> plots.FigureResult:
    """Fig. 3 analogue: SDT then TET; test accuracy and both test losses per epoch."""
    return plots.switch_figure(*artifacts.switch_metrics(layout))


def fig_timesteps(layout: RunLayout) -> plots.FigureResult:
    """Fig. 4A analogue: accuracy against the test T for models trained at several T."""
    return plots.timesteps_figure(artifacts.timesteps_table(layout))


def fig_tit(layout: RunLayout) -> plots.FigureResult:
    """TIT vs training from scratch: accuracy against cost (time steps x epochs, in t_s)."""
    data = artifacts.tit_rows(layout)
    if not (data.kind == "TIT").any():
        raise MissingArtifact(
            f"no TIT run under {layout.root}; make one with: python training/run.py --T 6 "
            f"--init-from {layout.root}/<T2 run>/last.pt --epochs 3 --out {layout.root}"
        )
    return plots.tit_figure(data)


def fig_momentum(layout: RunLayout) -> plots.FigureResult:
    """Gradient-momentum statistics: per-step error norms and gradient norms against the epoch."""
    runs = main_runs(find_runs(layout))
    frames = artifacts.gradient_stats(runs, "python training/run.py (--gradient-stats)")
    data = pd.concat(
        [stats.assign(method=run.method, seed=run.seed) for run, stats in zip(runs, frames)]
    )
    return plots.momentum_figure(data)


def fig_landscapes(layout: RunLayout) -> plots.FigureResult:
    """Fig. 2 analogue: 2-D landscapes, minimum found by SDT/TET x loss L_SDT/L_TET, one scale."""
    return plots.landscapes_figure({m: artifacts.surface(layout, m) for m in ("sdt", "tet")})


def fig_interpolation(layout: RunLayout) -> plots.FigureResult:
    """1-D interpolation between the SDT (alpha = 0) and TET (alpha = 1) minima, both losses."""
    return plots.interpolation_figure(artifacts.surface(layout, "interp"))


def fig_hessian(layout: RunLayout) -> plots.FigureResult:
    """Hessian: top eigenvalues and trace (mean ± std over seeds), SDT vs TET; densities."""
    frames = [
        artifacts.hessian_frame(layout, layout.hessian(loss)).assign(loss=loss)
        for loss in ("sdt", "tet")
    ]
    return plots.hessian_figure(frames, artifacts.hessian_densities(layout))


def fig_flatness(layout: RunLayout) -> plots.FigureResult:
    """Flatness vs generalization: lambda_max, trace, eps-sharpness against gap and accuracy."""
    table = artifacts.run_table(layout)
    columns = [c for c in ("lambda_max_sdt", "trace_sdt", "eps_sharpness_l_sdt") if c in table]
    if not columns or table[columns].isna().all().all():
        raise MissingArtifact("no Hessian or sharpness results; run the demo's analysis stages")
    return plots.flatness_figure(table, columns)


def fig_sharpness_dynamics(layout: RunLayout) -> plots.FigureResult:
    """lambda_max of the per-epoch checkpoints along training, SDT vs TET (2/lr line for SGD)."""
    data = artifacts.hessian_frame(layout, layout.hessian_epochs)
    configs = {run.name: run.config for run in find_runs(layout)}
    return plots.sharpness_dynamics_figure(data, configs)


FIGURES: dict[str, Callable[[RunLayout], plots.FigureResult]] = {
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
"""name -> ``layout -> (figure, the plotted data)``."""

REPORT_ORDER = (
    "fig2_landscapes",
    "fig3_hessian",
    "fig4_flatness_vs_generalization",
    "fig1_interpolation",
    "fig5_switch",
    "fig6_timesteps",
    "fig7_tit",
    "fig8_momentum",
    "fig9_sharpness_dynamics",
)
"""The order in which REPORT.md shows the figures."""

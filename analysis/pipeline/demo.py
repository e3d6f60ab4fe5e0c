"""The demo's stages: train on the offline default, analyse, run the study at demo scale.

Every stage is a :class:`~analysis.pipeline.jobs.Job` over the toolkit's own commands; run
folders come from :class:`~training.runs.layout.RunLayout` (through :func:`run_of`), artifact
folders from the same layout, so the demo, the commands and the readers of artifacts agree by
construction. A stage is done when its outputs under the runs folder exist (never because of a
file under ``figures/``, which is committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.pipeline.jobs import Job, command_line
from training.runs.config import TrainConfig
from training.runs.layout import RunFiles, RunLayout

__all__ = [
    "DEMO",
    "TINY",
    "Scale",
    "analysis_stages",
    "drawing_stages",
    "run_of",
    "study_stage",
    "training_stages",
]

MAIN_T = 4


@dataclass(frozen=True)
class Scale:
    """How much work the demo does (the default fits 15 minutes on 2 CPU cores)."""

    epochs: int = 15
    seeds: tuple[int, ...] = (0, 1, 2)
    switch_at: int = 10
    tit_epochs: int = 3
    samples: int = 512
    grid: int = 21
    interp_points: int = 41
    epoch_stride: int = 3


DEMO = Scale()
TINY = Scale(
    epochs=2,
    seeds=(0, 1),
    switch_at=1,
    tit_epochs=1,
    samples=64,
    grid=5,
    interp_points=5,
    epoch_stride=1,
)


def run_of(layout: RunLayout, method: str, seed: int, T: int = MAIN_T, **changes) -> RunFiles:
    """The folder of a digits run of the demo (its name from the run's own config)."""
    return layout.run(TrainConfig(method=method, seed=seed, T=T, **changes))


def _train(name: str, argv: list, outputs: list[Path]) -> Job:
    return Job(name, (command_line("training/run.py", *argv),), tuple(outputs))


def training_stages(layout: RunLayout, scale: Scale = DEMO) -> list[Job]:
    """Main runs (SDT and TET, every seed, per-epoch checkpoints), switch, T=2/T=6 and TIT runs."""
    common = ["--out", layout.root, "--resume", "--quiet", "--epochs", scale.epochs]
    seeds = [str(seed) for seed in scale.seeds]
    main = [run_of(layout, m, s) for s in scale.seeds for m in ("sdt", "tet")]
    switch = run_of(layout, "sdt", 0, switch_to_tet_at=scale.switch_at, epochs=scale.epochs)
    other_T = {T: [run_of(layout, "tet", s, T) for s in scale.seeds] for T in (2, 6)}
    stages = [
        _train(
            f"train SDT and TET, {len(seeds)} seeds",
            ["--seeds", *seeds, "--save-every", "1", *common],
            [run.last for run in main],
        ),
        _train(
            "train SDT -> TET switch",
            ["--method", "sdt", "--switch-to-tet-at", scale.switch_at, *common],
            [switch.last],
        ),
        Job(
            "train TET at T=2 (TIT's start) and T=6 (from scratch)",
            tuple(
                command_line(
                    "training/run.py", "--T", T, "--method", "tet", "--seeds", *seeds, *common
                )
                for T in (2, 6)
            ),
            tuple(run.last for T in (2, 6) for run in other_T[T]),
        ),
    ]
    for seed, source in zip(scale.seeds, other_T[2]):
        tit = run_of(layout, "tet", seed, 6, init_from=str(source.last))
        argv = ["--T", 6, "--method", "tet", "--seeds", seed, "--init-from", source.last]
        argv += ["--out", layout.root, "--resume", "--quiet", "--epochs", scale.tit_epochs]
        stages.append(_train(f"TIT fine-tune at T=6, seed {seed}", argv, [tit.last]))
    return stages


def _analysis(name: str, script: str, argv: list, outputs: list[Path], marker=None) -> Job:
    return Job(name, (command_line(f"analysis/{script}.py", *argv),), tuple(outputs), marker)


def hessian_stages(layout: RunLayout, scale: Scale = DEMO) -> list[Job]:
    """Hessian of L_SDT and L_TET at the final checkpoints; top eigenvalue along training."""
    finals = [run_of(layout, m, s).last for s in scale.seeds for m in ("sdt", "tet")]
    epochs = [
        run_of(layout, m, 0).snapshot(e)
        for m in ("sdt", "tet")
        for e in range(0, scale.epochs + 1, scale.epoch_stride)
    ]
    quiet = ["--quiet", "--overwrite"]
    hessian = ["--top-k", 5, "--samples", scale.samples, "--num-matvecs", 30, *quiet]
    density = ["--density", "--density-steps", 40, "--density-repeats", 2]
    top1 = ["--top-k", 1, "--trace", "none", "--samples", scale.samples, *quiet]
    stages = [
        _analysis(
            f"Hessian of L_{loss.upper()} at the final checkpoints",
            "hessian",
            [*finals, "--loss", loss, *hessian, *(density if loss == "tet" else [])]
            + ["--out", layout.hessian(loss)],
            [layout.hessian(loss) / "hessian.csv"],
        )
        for loss in ("sdt", "tet")
    ]
    return stages + [
        _analysis(
            "top eigenvalue along training (seed 0)",
            "hessian",
            [*epochs, *top1, "--out", layout.hessian_epochs],
            [layout.hessian_epochs / "hessian.csv"],
        )
    ]


def _surface(name: str, layout: RunLayout, argv: list, surface: str) -> Job:
    folder = layout.surface(surface)
    done = folder / "done"
    return _analysis(name, "surface", [*argv, "--out", folder], [done], marker=done)


def analysis_stages(layout: RunLayout, scale: Scale = DEMO) -> list[Job]:
    """Hessian, per-epoch sharpness, time steps, surfaces, sharpness metrics, momentum.

    Built after training, so that the time-step stage sees every trained run.
    """
    main = [run_of(layout, m, s) for s in scale.seeds for m in ("sdt", "tet")]
    finals = [run.last for run in main]
    every = [run.last for run in layout.runs() if run.last.exists()] or finals
    sdt0, tet0 = run_of(layout, "sdt", 0).last, run_of(layout, "tet", 0).last
    quiet = ["--quiet", "--overwrite"]
    common = ["--samples", scale.samples, *quiet]
    plane = ["--dim", 2, "--x", f"-1:1:{scale.grid}", *common]
    line = ["--dim", 1, "--directions", f"interp:{tet0}", "--x", f"-0.5:1.5:{scale.interp_points}"]
    return hessian_stages(layout, scale) + [
        _analysis(
            "accuracy at T = 1..8",
            "timesteps",
            [*every, "--split", "test", "--out", layout.timesteps, *quiet],
            [layout.timesteps / "timesteps.csv"],
        ),
        _surface("2D surface of the SDT minimum (seed 0)", layout, [sdt0, *plane], "sdt"),
        _surface("2D surface of the TET minimum (seed 0)", layout, [tet0, *plane], "tet"),
        _surface("1D interpolation SDT -> TET (seed 0)", layout, [sdt0, *line, *common], "interp"),
        _analysis(
            "sharpness of the final checkpoints",
            "sharpness",
            [*finals, "--out", layout.sharpness, *quiet],
            [layout.sharpness / "sharpness.csv"],
        ),
        _analysis(
            "gradient-momentum statistics",
            "momentum",
            [*(run.path for run in main), "--out", layout.momentum, *quiet],
            [layout.momentum / "momentum.csv"],
        ),
    ]


def study_stage(layout: RunLayout, figures: Path, tiny: bool) -> Job:
    """The evidence study at a reduced scale (``make study`` runs it in full).

    Demo scale (``analysis.evidence.study_design.SCALES["demo"]``): 4 pairs on MNIST-1D static
    (10 epochs, each pair on its own draw), cheaper flatness settings and 8 population runs,
    against 12/20/12 pairs on three benchmarks and 108 population runs in the full study; digits
    is covered by the demo's own runs and REPORT.md. Its STUDY.md says so. Done when its runs say
    so: ``figures/study-demo`` is committed, so it exists in a fresh clone.
    """
    scale, out = ("tiny" if tiny else "demo"), figures / "study-demo"
    argv = ["--runs", layout.study, "--figures", out, "--scale", scale]
    argv += ["--data-root", layout.root / "data"] if tiny else []  # tests leave no data behind
    done = layout.study / "done"
    name = f"evidence study at {scale} scale (fewer seeds and epochs than make study)"
    return _analysis(name, "study", argv, [done, out / "STUDY.md"], marker=done)


def drawing_stages(layout: RunLayout, figures: Path) -> list[Job]:
    """Every figure and REPORT.md from the saved artifacts (always redrawn: they are cheap)."""
    return [
        Job(
            "figures",
            (command_line("analysis/figures.py", "--runs", layout.root, "--out", figures),),
            (),
        ),
        Job(
            "report",
            (command_line("analysis/report.py", "--runs", layout.root, "--figures", figures),),
            (),
        ),
    ]

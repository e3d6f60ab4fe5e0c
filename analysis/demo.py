"""The whole chain on the offline default: train -> analyse -> figures -> report.

Trains SDT and TET on the digits default for 3 seeds (plus the short switch, time-step and TIT
runs the figures need), runs the Hessian, surface, sharpness and momentum analyses, runs the
evidence study on MNIST-1D at demo scale (4 paired seeds at 10 epochs instead of the full study's
10 seeds at 20 on both benchmarks, 8 population runs instead of 72: figures/study-demo/STUDY.md),
writes every figure and figures/REPORT.md. Every stage is skipped when its outputs exist, so
running the command again resumes where it stopped (training itself resumes inside a run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from training.config import ArgumentParser

REPO = Path(__file__).resolve().parent.parent

MAIN_T = 4


@dataclass(frozen=True)
class Scale:
    """How much work the demo does (the default fits 15 minutes on 2 CPU cores)."""

    epochs: int = 15
    seeds: tuple[str, ...] = ("0", "1", "2")
    switch_at: int = 10
    tit_epochs: int = 3
    samples: str = "512"
    grid: int = 21
    interp_points: int = 41
    epoch_stride: int = 3


TINY = Scale(
    epochs=2,
    seeds=("0", "1"),
    switch_at=1,
    tit_epochs=1,
    samples="64",
    grid=5,
    interp_points=5,
    epoch_stride=1,
)


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline: skipped when every output exists."""

    name: str
    outputs: tuple[Path, ...]
    run: Callable[[], int]


def _run_name(method: str, seed: str, T: int = MAIN_T, suffix: str = "") -> str:
    return f"digits-digits_snn-T{T}-{method}{suffix}-seed{seed}"


def _command(module: str, argv: list[str]) -> Callable[[], int]:
    """Run the command ``module`` (e.g. ``analysis.hessian``) in its own process, as a user would.

    The demo is a pipeline of commands, like a Makefile: it imports none of them.
    """

    def run() -> int:
        script = REPO / (module.replace(".", "/") + ".py")
        return subprocess.run([sys.executable, str(script), *argv]).returncode

    return run


def _train(argv: list[str]) -> Callable[[], int]:
    return _command("training.run", argv)


def _analysis(module: str, argv: list[str]) -> Callable[[], int]:
    return _command(f"analysis.{module}", argv)


def _last(runs: Path, names: list[str]) -> list[str]:
    return [str(runs / name / "last.pt") for name in names]


def training_stages(runs: Path, scale: Scale = Scale()) -> list[Stage]:
    """Main runs (3 seeds x SDT/TET, per-epoch checkpoints), switch, T=2/T=6 and TIT runs."""
    common = ["--out", str(runs), "--resume", "--quiet", "--epochs", str(scale.epochs)]
    main = [_run_name(m, s) for s in scale.seeds for m in ("sdt", "tet")]
    other_T = [_run_name("tet", s, T) for T in (2, 6) for s in scale.seeds]
    tit = [_run_name("tet", s, 6, "-init") for s in scale.seeds]
    stages = [
        Stage(
            "train SDT and TET, 3 seeds",
            tuple(runs / n / "last.pt" for n in main),
            _train(["--seeds", *scale.seeds, "--save-every", "1", *common]),
        ),
        Stage(
            "train SDT -> TET switch",
            (runs / _run_name("sdt", "0", suffix=f"-switch{scale.switch_at}") / "last.pt",),
            _train(["--method", "sdt", "--switch-to-tet-at", str(scale.switch_at), *common]),
        ),
        Stage(
            "train TET at T=2 (TIT's start) and T=6 (from scratch)",
            tuple(runs / n / "last.pt" for n in other_T),
            lambda: max(
                _train(["--T", T, "--method", "tet", "--seeds", *scale.seeds, *common])()
                for T in ("2", "6")
            ),
        ),
    ]
    for seed, name in zip(scale.seeds, tit):
        source = runs / _run_name("tet", seed, 2) / "last.pt"
        argv = [
            "--T",
            "6",
            "--method",
            "tet",
            "--seeds",
            seed,
            "--init-from",
            str(source),
            "--out",
            str(runs),
            "--resume",
            "--quiet",
            "--epochs",
            str(scale.tit_epochs),
        ]
        stages.append(
            Stage(f"TIT fine-tune at T=6, seed {seed}", (runs / name / "last.pt",), _train(argv))
        )
    return stages


def hessian_stages(runs: Path, scale: Scale = Scale()) -> list[Stage]:
    """Hessian of L_SDT and L_TET at the final checkpoints; top eigenvalue along training."""
    out = runs / "analysis"
    finals = _last(runs, [_run_name(m, s) for s in scale.seeds for m in ("sdt", "tet")])
    epochs = [
        str(runs / _run_name(m, "0") / f"epoch_{e:03d}.pt")
        for m in ("sdt", "tet")
        for e in range(0, scale.epochs + 1, scale.epoch_stride)
    ]
    quiet = ["--quiet", "--overwrite"]
    hessian = ["--top-k", "5", "--samples", scale.samples, "--num-matvecs", "30", *quiet]
    density = ["--density", "--density-steps", "40", "--density-repeats", "2"]
    top1 = ["--top-k", "1", "--trace", "none", "--samples", scale.samples, *quiet]
    stages = [
        Stage(
            f"Hessian of L_{loss.upper()} at the final checkpoints",
            (out / f"hessian_{loss}" / "hessian.csv",),
            _analysis(
                "hessian",
                [
                    *finals,
                    "--loss",
                    loss,
                    *hessian,
                    *(density if loss == "tet" else []),
                    "--out",
                    str(out / f"hessian_{loss}"),
                ],
            ),
        )
        for loss in ("sdt", "tet")
    ]
    return stages + [
        Stage(
            "top eigenvalue along training (seed 0)",
            (out / "hessian_epochs" / "hessian.csv",),
            _analysis("hessian", [*epochs, *top1, "--out", str(out / "hessian_epochs")]),
        )
    ]


def analysis_stages(runs: Path, scale: Scale = Scale()) -> list[Stage]:
    """Hessian, per-epoch sharpness, time steps, surfaces, sharpness metrics, momentum."""
    out = runs / "analysis"
    main = [_run_name(m, s) for s in scale.seeds for m in ("sdt", "tet")]
    finals = _last(runs, main)
    every = sorted(str(p) for p in runs.glob("*/last.pt")) or finals
    sdt0, tet0 = _last(runs, [_run_name("sdt", "0"), _run_name("tet", "0")])
    quiet = ["--quiet", "--overwrite"]
    surface = ["--samples", scale.samples, *quiet]
    x = f"-0.5:1.5:{scale.interp_points}"
    interp = [sdt0, "--dim", "1", "--directions", f"interp:{tet0}", "--x", x]
    interp_out = out / "surface" / "interp"
    return hessian_stages(runs, scale) + [
        Stage(
            "accuracy at T = 1..8",
            (out / "timesteps" / "timesteps.csv",),
            _analysis(
                "timesteps",
                [*every, "--split", "test", "--out", str(out / "timesteps"), *quiet],
            ),
        ),
        Stage(
            "2D surfaces of the SDT and TET minima (seed 0)",
            (out / "surface" / "sdt" / "done", out / "surface" / "tet" / "done"),
            lambda: _surfaces(out / "surface", sdt0, tet0, surface, scale.grid),
        ),
        Stage(
            "1D interpolation SDT -> TET (seed 0)",
            (interp_out / "done",),
            lambda: _mark(
                interp_out,
                _analysis("surface", [*interp, "--out", str(interp_out), *surface])(),
            ),
        ),
        Stage(
            "sharpness of the final checkpoints",
            (out / "sharpness" / "sharpness.csv",),
            _analysis("sharpness", [*finals, "--out", str(out / "sharpness"), *quiet]),
        ),
        Stage(
            "gradient-momentum statistics",
            (out / "momentum" / "momentum.csv",),
            _analysis(
                "momentum",
                [*(str(runs / n) for n in main), "--out", str(out / "momentum"), *quiet],
            ),
        ),
    ]


def study_stage(runs: Path, figures: Path, tiny: bool) -> Stage:
    """The evidence study on both benchmarks at a reduced scale (``make study`` runs it in full).

    Demo scale: 4 paired seeds per method on MNIST-1D (10 epochs) and 8 population runs, against
    10 seeds on both benchmarks (MNIST-1D at 20 epochs) and 72 runs in the full study; digits is
    covered by the demo's own runs and REPORT.md. Its STUDY.md says so.
    """
    scale, out = ("tiny" if tiny else "demo"), figures / "study-demo"
    argv = ["--runs", str(runs / "study"), "--figures", str(out), "--scale", scale]
    argv += ["--data-root", str(runs / "data")] if tiny else []  # tests leave no data behind
    # done when its runs say so: figures/study-demo is committed, so it exists in a fresh clone
    return Stage(
        f"evidence study at {scale} scale (fewer seeds and epochs than make study)",
        (runs / "study" / "done", out / "STUDY.md"),
        lambda: _mark(runs / "study", _analysis("study", argv)()),
    )


def _mark(folder: Path, code: int) -> int:
    if code == 0:
        (folder / "done").write_text("ok\n")
    return code


def _surfaces(out: Path, sdt: str, tet: str, common: list[str], grid: int) -> int:
    codes = []
    for name, path in (("sdt", sdt), ("tet", tet)):
        argv = [path, "--dim", "2", "--x", f"-1:1:{grid}", "--out", str(out / name), *common]
        codes.append(_mark(out / name, _analysis("surface", argv)()))
    return max(codes)


def _stream(first: list[Stage], later: Callable[[], list[Stage]]):
    yield from first
    yield from later()


def build_parser():
    parser = ArgumentParser(
        description=__doc__,
        epilog="example:\n  python analysis/demo.py --runs runs --figures figures   (make demo)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", default="runs", help="runs folder (default: %(default)s)")
    parser.add_argument("--tiny", action="store_true", help="a minimal run (smoke tests)")
    parser.add_argument(
        "--figures", default="figures", help="figures folder (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs, figures = Path(args.runs), Path(args.figures)
    began = time.perf_counter()
    scale = TINY if args.tiny else Scale()
    stages = training_stages(runs, scale)
    study = study_stage(runs, figures, args.tiny)
    total = len(stages) + len(analysis_stages(runs, scale)) + 3  # + study, figures and report
    # analyses are built after training, so that they see the trained runs

    def later() -> list[Stage]:
        return [*analysis_stages(runs, scale), study]

    for number, stage in enumerate(_stream(stages, later), 1):
        tag = f"[demo {number}/{total}] {stage.name}"
        if all(path.exists() for path in stage.outputs):
            print(f"{tag}: done, skipped", file=sys.stderr)
            continue
        print(f"{tag} ... ({time.perf_counter() - began:.0f} s so far)", file=sys.stderr)
        if stage.run() != 0:
            print(f"[demo] stage failed: {stage.name}", file=sys.stderr)
            return 1
    print(f"[demo {total - 1}/{total}] figures ...", file=sys.stderr)
    _analysis("figures", ["--runs", str(runs), "--out", str(figures)])()
    print(f"[demo {total}/{total}] report ...", file=sys.stderr)
    code = _analysis("report", ["--runs", str(runs), "--figures", str(figures)])()
    print(
        f"[demo] finished in {time.perf_counter() - began:.0f} s; see {figures}/REPORT.md",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())

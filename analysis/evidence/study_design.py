"""The design of the evidence study (issue 12): runs, grids, margins and the jobs that make them.

Everything a verdict depends on is fixed here, in code, before any result was looked at:

- paired design per benchmark: SDT and TET with the same seeds (same initial weights and data
  order) at the committed settings: digits at the training defaults, MNIST-1D at
  ``configs/mnist1d.json``;
- the population on MNIST-1D: loss (SDT, TET λ 0.05, TET λ 1e-3) x T x learning rate x batch size
  x seeds, at fewer epochs than the committed 20 (stated in :class:`StudyScale`), gradient
  statistics off (they do not change training, only cost time);
- :data:`MARGINS`: the equivalence margin δ of every paired metric, with its reason.

Jobs are commands (``training/run.py``, ``analysis/flatness.py``) run as subprocesses with
``OMP_NUM_THREADS=1``, at most ``StudyScale.jobs`` at a time; each is skipped when its outputs
exist, so the study resumes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

from analysis.pipeline.jobs import REPO, Job, command_line

__all__ = [
    "StudyScale",
    "SCALES",
    "Margin",
    "MARGINS",
    "margin_for",
    "paired_jobs",
    "population_cells",
    "population_jobs",
    "flatness_jobs",
    "flatness_stage",
    "BENCHMARKS",
]

BENCHMARKS = ("digits", "mnist1d")
MNIST1D_CONFIG = REPO / "configs" / "mnist1d.json"


@dataclass(frozen=True)
class StudyScale:
    """How much the study runs. ``full`` (``make study``) is what the committed report holds.

    Attributes:
        name: ``tiny``, ``demo`` or ``full``.
        benchmarks: Benchmarks of the paired design.
        seeds: Paired seeds per benchmark (SDT and TET each).
        epochs: Training epochs per benchmark (None: the committed setting).
        mnist1d_samples: Generated MNIST-1D samples (None: the committed 5,000).
        losses: Population loss levels ``(method, tet_lambda)``.
        T: Population T levels.
        lr: Population learning rates.
        batch_size: Population batch sizes.
        population_seeds: Seeds per population cell.
        population_epochs: Population training epochs (committed runs use 20).
        flatness: Extra ``analysis/flatness.py`` flags (tiny scales only; empty: the defaults).
        train_extra: Extra ``training/run.py`` flags (tiny scales only).
        jobs: Subprocesses at a time.
    """

    name: str = "full"
    benchmarks: tuple = BENCHMARKS
    seeds: int = 10
    epochs: dict = field(default_factory=lambda: {"digits": None, "mnist1d": None})
    mnist1d_samples: int | None = None
    losses: tuple = (("sdt", 0.05), ("tet", 0.05), ("tet", 0.001))
    T: tuple = (2, 4)
    lr: tuple = (0.001, 0.005)
    batch_size: tuple = (64, 128)
    population_seeds: int = 3
    population_epochs: int = 10
    flatness: tuple = ()
    train_extra: tuple = ()
    jobs: int = 2


SCALES = {
    "full": StudyScale(),
    # make demo: MNIST-1D only (the demo's own runs cover digits), 10 epochs instead of 20
    "demo": StudyScale(
        name="demo",
        benchmarks=("mnist1d",),
        seeds=4,
        epochs={"digits": None, "mnist1d": 10},
        losses=(("sdt", 0.05), ("tet", 0.05)),
        T=(4,),
        population_seeds=1,
        population_epochs=5,
    ),
    "tiny": StudyScale(
        name="tiny",
        seeds=2,
        epochs={"digits": 1, "mnist1d": 1},
        mnist1d_samples=200,
        losses=(("sdt", 0.05), ("tet", 0.05)),
        T=(4,),
        lr=(0.005,),
        batch_size=(64, 128),
        population_seeds=1,
        population_epochs=1,
        flatness=(
            "--samples",
            "32",
            "--trace-matvecs",
            "6",
            "--lanczos-max-steps",
            "6",
            "--epsilon-steps",
            "2",
            "--adaptive-steps",
            "2",
            "--average-samples",
            "2",
        ),
        train_extra=("--steps-per-epoch", "3", "--no-gradient-stats"),
    ),
}


@dataclass(frozen=True)
class Margin:
    """Equivalence margin of one metric: absolute, or relative to |mean of SDT| over seeds."""

    value: float
    relative: bool
    reason: str


MARGINS = {
    "test_acc": Margin(
        0.005,
        False,
        "0.5 points: below any accuracy difference worth a method "
        "change; 5 test samples on MNIST-1D, ~2 on digits",
    ),
    "acc_gap": Margin(0.005, False, "0.5 points, the same scale as the accuracy itself"),
    "loss_gap": Margin(
        0.10, True, "10 % of SDT's test-minus-train loss: a loss gap has no natural absolute scale"
    ),
    "flatness": Margin(
        0.10,
        True,
        "10 % of SDT's mean value: curvature and sharpness have no "
        "natural unit; 10 % is below the seed-to-seed spread seen in the 3-seed "
        "digits report",
    ),
}
"""Fixed before any study result; a relative margin is ``value * |mean over seeds of SDT|``."""


def margin_for(metric: str, sdt_values) -> tuple[float, Margin]:
    """The absolute δ used for ``metric`` and its :class:`Margin` (flatness metrics share one).

    A relative margin is applied as ``δ = value * |mean(SDT values)|`` (NaN dropped); it never
    depends on TET's values or on the differences.
    """
    margin = MARGINS.get(metric, MARGINS["flatness"])
    if not margin.relative:
        return margin.value, margin
    values = [float(v) for v in sdt_values if v == v]
    mean = abs(sum(values) / len(values)) if values else float("nan")
    return margin.value * mean if mean > 0 else float("nan"), margin


def _train(argv: list[str], scale: StudyScale) -> tuple[tuple[str, ...]]:
    return (command_line("training/run.py", *argv, *scale.train_extra, "--resume", "--quiet"),)


def _benchmark_args(benchmark: str, scale: StudyScale, data_root: str) -> list[str]:
    args = ["--config", str(MNIST1D_CONFIG)] if benchmark == "mnist1d" else []
    epochs = scale.epochs.get(benchmark)
    args += ["--epochs", str(epochs)] if epochs else []
    if benchmark == "mnist1d" and scale.mnist1d_samples:
        args += ["--mnist1d-samples", str(scale.mnist1d_samples)]
    return args + ["--data-root", data_root]


def paired_jobs(root: Path, benchmark: str, scale: StudyScale, data_root: str) -> list[Job]:
    """SDT and TET of every seed at the benchmark's committed settings, one job per run."""
    out, jobs = root / benchmark, []
    for seed, method in itertools.product(range(scale.seeds), ("sdt", "tet")):
        argv = [*_benchmark_args(benchmark, scale, data_root), "--method", method]
        argv += ["--seeds", str(seed), "--out", str(out)]
        done = out / f"{method}-seed{seed}.done"
        name = f"train {benchmark} {method} seed {seed}"
        jobs.append(Job(name, _train(argv, scale), (done,), marker=done))
    return jobs


def population_cells(scale: StudyScale) -> list[dict]:
    """Every population run: ``cell`` (its folder), method, tet_lambda, T, lr, batch_size, seed."""
    cells = []
    for (method, lamb), T, lr, batch, seed in itertools.product(
        scale.losses, scale.T, scale.lr, scale.batch_size, range(scale.population_seeds)
    ):
        loss = f"{method}" if method == "sdt" else f"tet{lamb:g}"
        cell = f"{loss}-T{T}-lr{lr:g}-b{batch}"
        cells.append(
            {
                "cell": cell,
                "loss": loss,
                "method": method,
                "tet_lambda": lamb,
                "T": T,
                "lr": lr,
                "batch_size": batch,
                "seed": seed,
            }
        )
    return cells


def population_jobs(root: Path, scale: StudyScale, data_root: str) -> list[Job]:
    """One training job per population run (under ``root/population/<cell>``)."""
    jobs = []
    for c in population_cells(scale):
        out = root / "population" / c["cell"]
        argv = [
            "--config",
            str(MNIST1D_CONFIG),
            "--method",
            c["method"],
            "--tet-lambda",
            str(c["tet_lambda"]),
            "--T",
            str(c["T"]),
            "--lr",
            str(c["lr"]),
            "--batch-size",
            str(c["batch_size"]),
            "--seeds",
            str(c["seed"]),
            "--epochs",
            str(scale.population_epochs),
            "--no-gradient-stats",
            "--out",
            str(out),
            "--data-root",
            data_root,
        ]
        if scale.mnist1d_samples:
            argv += ["--mnist1d-samples", str(scale.mnist1d_samples)]
        done = out / f"seed{c['seed']}.done"
        name = f"train population {c['cell']} seed {c['seed']}"
        jobs.append(Job(name, _train(argv, scale), (done,), marker=done))
    return jobs


def flatness_stage(root: Path, scale: StudyScale) -> list[Job]:
    """The flatness of every final checkpoint: per benchmark with the per-step losses (6
    checkpoints a job), the population without (12 a job); run after training."""
    jobs = []
    for group, per_step in (*((b, True) for b in scale.benchmarks), ("population", False)):
        checkpoints = sorted((root / group).rglob("last.pt"))
        out = root / "flatness" / group
        jobs += flatness_jobs(group, checkpoints, out, scale, per_step, 6 if per_step else 12)
    return jobs


def flatness_jobs(
    group: str, checkpoints: list[Path], out: Path, scale: StudyScale, per_step: bool, chunk: int
) -> list[Job]:
    """``analysis/flatness.py`` over ``checkpoints`` in chunks (``out/part<k>/flatness.csv``)."""
    jobs = []
    for k in range(0, len(checkpoints), chunk):
        folder = out / f"part{k // chunk:03d}"
        line = command_line(
            "analysis/flatness.py",
            *checkpoints[k : k + chunk],
            "--out",
            folder,
            "--overwrite",
            "--quiet",
            "--per-step" if per_step else "--no-per-step",
            *scale.flatness,
        )
        jobs.append(Job(f"flatness {group} part {k // chunk}", (line,), (folder / "flatness.csv",)))
    return jobs

"""The evidence study: paired SDT/TET runs on three benchmarks, flatness with its errors, a
population trained to a common criterion, and STUDY.md; or the same paired design on any
benchmark of the registry (--benchmark, e.g. the paper's cifar10-resnet19), on this machine or on a
SLURM cluster (--launcher slurm).

Stages (``--stage``, default all, in this order; each can be run alone and resumes):

- ``paired``: digits and MNIST-1D static, every pair on its own data, trained and measured;
- ``temporal``: MNIST-1D with the sequence encoding, the same;
- ``population``: the MNIST-1D population, trained to the stopping criterion and measured;
- ``subsets``: flatness of a few MNIST-1D checkpoints on disjoint data subsets (after paired);
- ``connectivity``: loss barriers between MNIST-1D minima (SDT-TET and seed-to-seed, straight
  and curved, aligned and not) and the surrogate-to-spike gap (after paired and population); at
  full scale only when asked for (``--stage connectivity``, about 1.8 h more on 2 cores);
- ``report``: every CSV, figure and STUDY.md into ``--figures`` from whatever exists.

Jobs are ``training/run.py`` and ``analysis/flatness.py`` command lines. --launcher local runs
them as subprocesses, one thread each, two at a time (logs: <runs>/logs/); --launcher slurm
submits each stage's jobs as SLURM job arrays through submitit, with each benchmark's resources,
requeued and resumed after preemption or a time limit (logs: <runs>/slurm/); a job with several
GPUs runs under torchrun. Every job is skipped when its outputs exist, so running the command again
resumes. The design (benchmarks, pairs, endpoints, margins, settings, resources) is
``analysis/evidence/study_design.py``; docs/cluster.md runs it on a cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.evidence.study_connectivity import connectivity_jobs
from analysis.evidence.study_design import (
    BENCHMARKS,
    SCALES,
    STAGES,
    flatness_jobs,
    gpu_hours,
    paired_jobs,
    population_flatness_jobs,
    population_jobs,
    subset_jobs,
)
from analysis.evidence.study_report import write_study
from analysis.pipeline.launch import LaunchSettings, launcher_for
from toolkit.command import ArgumentParser, check_folders, command
from toolkit.errors import ConfigError
from toolkit.io import atomic_write_text
from toolkit.settings import add_config_args, config_from_args

TIMINGS = "study_timings.json"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(
        prog="study.py",
        description=__doc__,
        epilog="example:\n  python analysis/study.py --runs runs-study --scale full\n"
        "  python analysis/study.py --runs runs-study --stage population\n"
        "  python analysis/study.py --benchmark cifar10-resnet19 --launcher slurm "
        "--partition gpu\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=Path, default=Path("runs-study"), help="runs folder (default: %(default)s)")
    add(
        "--figures",
        type=Path,
        help="output folder (default: figures, with --benchmark figures/study-<benchmark>)",
    )
    add("--scale", choices=sorted(SCALES), default="full", help="how much to run (default: full)")
    add(
        "--stage",
        choices=[*STAGES, "all"],
        default="all",
        help="run one stage only (default: all, in order)",
    )
    add("--data-root", default="data", help="dataset folder for training (default: data)")
    add(
        "--benchmark",
        choices=list(BENCHMARKS),
        help="run the paired design on this benchmark only, at the scale's pairs and epochs "
        "for it or else its own full design (default: the scale's benchmarks)",
    )
    add(
        "--plan",
        action="store_true",
        help="print each benchmark's runs, resources and GPU-hours (measured or the formula) "
        "and exit",
    )
    add_config_args(parser, LaunchSettings, title="where the jobs run")
    return parser


def print_plan(scale) -> None:
    """One line per benchmark of ``scale``: pairs, epochs, resources per job, GPU-hours."""
    for name, pairs in scale.pairs.items():
        benchmark = BENCHMARKS[name]
        cost = gpu_hours(benchmark, pairs, scale.epochs.get(name) or benchmark.epochs)
        hours = cost["gpu_hours"]
        told = f"{hours:,.0f} GPU-hours" if hours is not None else f"unmeasured: {cost['formula']}"
        if benchmark.training.gpus == 0:
            told = "CPU jobs (make study's times: docs/evidence.md)"
        train, measure = benchmark.training, benchmark.measuring
        epochs = cost["epochs"] or "the config's"
        print(
            f"{name}: {cost['runs']} runs of {epochs} epochs "
            f"({train.gpus} GPU, {train.cpus} CPUs, {train.mem_gb:g} GB, {train.hours:g} h per "
            f"allocation) + {pairs} flatness jobs ({measure.gpus} GPU, {measure.hours:g} h); "
            f"training {told}"
        )


def _stage_jobs(stage: str, root: Path, scale, data_root: str):
    """The training jobs and the measuring jobs of a stage (the second list is built after the
    first ran, from the checkpoints it made)."""
    names = [b for b in BENCHMARKS if b in scale.pairs and BENCHMARKS[b].stage == stage]
    if stage in ("paired", "temporal"):
        training = [j for name in names for j in paired_jobs(root, name, scale, data_root)]
        return training, lambda: [j for name in names for j in flatness_jobs(root, name, scale)]
    if stage == "population":
        return population_jobs(root, scale, data_root), lambda: population_flatness_jobs(
            root, scale
        )
    if stage == "subsets" and scale.subsets:
        return [], lambda: subset_jobs(root, scale)
    if stage == "connectivity":
        return [], lambda: connectivity_jobs(root, scale)
    return [], lambda: []


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    launch = config_from_args(args, LaunchSettings)
    scale, root, began = SCALES[args.scale], args.runs, time.perf_counter()
    if args.benchmark:
        scale = scale.only(args.benchmark)
    default_figures = Path("figures") / f"study-{args.benchmark}" if args.benchmark else "figures"
    figures = Path(args.figures or default_figures)
    if args.plan:
        print_plan(scale)
        return 0
    for name in scale.pairs:
        if BENCHMARKS[name].missing:
            raise ConfigError(f"--benchmark {name} cannot run yet: {BENCHMARKS[name].missing}")
    check_folders({"--runs": root, "--figures": figures})
    launcher = launcher_for(launch, root, scale.jobs)

    def log(message: str) -> None:
        print(f"[study {time.perf_counter() - began:5.0f} s] {message}", file=sys.stderr)

    timings_path = root / TIMINGS
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    every = [s for s in STAGES[:-1] if s != "connectivity" or scale.connectivity_in_all]
    for stage in every if args.stage == "all" else [args.stage]:
        if stage == "report":
            continue
        start = time.perf_counter()
        training, measuring = _stage_jobs(stage, root, scale, args.data_root)
        pending = [job for job in training if not job.done()]
        if not launcher.run(training, log, f"{stage}-training"):
            return 1
        jobs = measuring()
        pending += [job for job in jobs if not job.done()]
        if not launcher.run(jobs, log, f"{stage}-flatness"):
            return 1
        if pending:  # the stage did work: its time is this run's
            key = f"{stage} ({args.benchmark})" if args.benchmark else stage
            timings[key] = round(time.perf_counter() - start, 1)
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(timings_path, json.dumps(timings, indent=1) + "\n")
            log(f"stage {stage}: {timings[key] / 60:.1f} min")
    if args.stage in ("all", "report"):
        start = time.perf_counter()
        names = write_study(root, figures, scale, timings)
        log(f"wrote {figures / 'STUDY.md'} and {len(names)} figures")
        log(f"stage report: {(time.perf_counter() - start) / 60:.1f} min")
    return 0


main = command(_main, "study.py", interrupted="run the study again: it resumes where it stopped")

if __name__ == "__main__":
    sys.exit(main())

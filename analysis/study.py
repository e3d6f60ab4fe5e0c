"""The full evidence on both benchmarks: paired SDT/TET seeds, flatness, population, STUDY.md.

Trains (``training/run.py`` subprocesses, one thread each, two at a time) the paired runs
of digits and MNIST-1D and the MNIST-1D population, measures the flatness of every final
checkpoint (``analysis/flatness.py``), then writes the paired claims tables, the population
Kendall table, three figures (PNG, PDF, CSV) and STUDY.md into ``--figures``. Every job is skipped
when its outputs exist, so running the command again resumes.

Example:
    python analysis/study.py --runs runs-study --figures figures --scale full
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from analysis import plots_study, study_results  # noqa: E402
from analysis.common import write_csv  # noqa: E402
from analysis.study_design import SCALES, Job, flatness_jobs, paired_jobs, population_jobs  # noqa: E402  # noqa: E402
from analysis.study_report import render  # noqa: E402
from analysis.style import save_figure  # noqa: E402
from landscape.io import atomic_write_text  # noqa: E402
from training.config import ArgumentParser  # noqa: E402


def run_jobs(jobs: list[Job], parallel: int, log) -> bool:
    """Run the jobs not done yet, ``parallel`` at a time; True when all succeeded.

    After the first failure no new job starts (the running ones finish), so a broken setup costs
    one job, not the whole list; running the study again retries from there.
    """
    pending = [job for job in jobs if not job.done.exists()]
    running, ok = [], True
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            log(f"{job.name}")
            process = subprocess.Popen(
                [sys.executable, *job.argv], env=env, stdout=subprocess.DEVNULL
            )
            running.append((job, process))
        time.sleep(0.2)
        for job, process in list(running):
            if process.poll() is None:
                continue
            running.remove((job, process))
            if process.returncode != 0:
                log(f"FAILED ({process.returncode}): {job.name}")
                ok, pending = False, []
            elif job.marker:
                job.done.parent.mkdir(parents=True, exist_ok=True)
                job.done.write_text("ok\n")
    return ok


def _save(figure_and_data, figures: Path, name: str) -> str:
    figure, data = figure_and_data
    save_figure(figure, figures / f"{name}.png")
    write_csv(figures / f"{name}.csv", list(data.columns), data.itertuples(index=False))
    return name


def _flatness_jobs(root: Path, scale) -> list[Job]:
    jobs = []
    for group, per_step in (*((b, True) for b in scale.benchmarks), ("population", False)):
        checkpoints = sorted((root / group).rglob("last.pt"))
        out = root / "flatness" / group
        jobs += flatness_jobs(group, checkpoints, out, scale, per_step, 6 if per_step else 12)
    return jobs


def _tables(root: Path, benchmarks: tuple[str, ...]):
    paired, frames = {}, {}
    for benchmark in benchmarks:
        frame = study_results.wide_frame(
            study_results.run_frame(root / benchmark),
            study_results.flatness_frame(root / "flatness" / benchmark),
        )
        frames[benchmark] = frame
        table = study_results.paired_table(frame) if not frame.empty else pd.DataFrame()
        paired[benchmark] = table.assign(benchmark=benchmark) if not table.empty else table
    population = study_results.wide_frame(
        study_results.run_frame(root / "population"),
        study_results.flatness_frame(root / "flatness" / "population"),
    )
    return paired, frames, population


_PER_RUN = ("seed", "method", "data_root", "device", "init_from", "switch_to_tet_at")


def _training_settings(folder: Path) -> dict:
    """The config every paired run of a benchmark shares (fields that vary per run dropped)."""
    found = sorted(folder.glob("*/config.json"))
    if not found:
        return {}
    config = json.loads(found[0].read_text())
    return {k: v for k, v in config.items() if k not in _PER_RUN}


def _flatness_settings(folder: Path) -> dict:
    """The settings ``analysis/flatness.py`` recorded (the same for every part)."""
    found = sorted(folder.glob("*/part*/flatness.json"))
    return json.loads(found[0].read_text())["settings"] if found else {}


def write_outputs(root: Path, figures: Path, scale) -> list[str]:
    """Tables, figures and STUDY.md from the saved artifacts; returns the figure names."""
    paired, frames, population = _tables(root, scale.benchmarks)
    taus = study_results.population_table(population)
    figures.mkdir(parents=True, exist_ok=True)
    names = []
    if not taus.empty:
        names.append(_save(plots_study.tau_figure(taus), figures, "study_tau"))
    steps = study_results.per_step_frame(
        study_results.flatness_frame(root / "flatness" / "mnist1d")
    )
    if not steps.empty and steps.t.notna().any():
        names.append(_save(plots_study.per_step_figure(steps), figures, "study_per_step"))
    tables = [t for t in paired.values() if not t.empty]
    if tables:
        table = pd.concat(tables, ignore_index=True)
        differences = pd.concat(
            [
                study_results.paired_differences(frames[b], t).assign(benchmark=b)
                for b, t in paired.items()
                if not t.empty
            ]
        )
        names.append(_save(plots_study.paired_figure(differences, table), figures, "study_paired"))
        write_csv(figures / "study_paired.csv", list(table.columns), table.itertuples(index=False))
    if not taus.empty:
        write_csv(
            figures / "study_population.csv", list(taus.columns), taus.itertuples(index=False)
        )
    settings = {
        "scale": scale.name,
        **{k: v for k, v in dataclasses.asdict(scale).items()},
        "population_runs": len(population),
        "paired_gap_definition": study_results.__doc__.split("Generalization gap: ")[-1]
        .strip()
        .replace("\n", " "),
    }  # noqa
    configs = {b: _training_settings(root / b) for b in scale.benchmarks}
    text = render(paired, taus, settings, names, configs, _flatness_settings(root / "flatness"))
    atomic_write_text(figures / "STUDY.md", text)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path("runs-study"), help="runs folder")
    parser.add_argument("--figures", type=Path, default=Path("figures"), help="output folder")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="how much to run")
    parser.add_argument("--data-root", default="data", help="dataset folder for training")
    args = parser.parse_args(argv)
    scale, root, began = SCALES[args.scale], args.runs, time.perf_counter()

    def log(message: str) -> None:
        print(f"[study {time.perf_counter() - began:5.0f} s] {message}", file=sys.stderr)

    training = [j for b in scale.benchmarks for j in paired_jobs(root, b, scale, args.data_root)]
    training += population_jobs(root, scale, args.data_root)
    if not run_jobs(training, scale.jobs, log) or not run_jobs(
        _flatness_jobs(root, scale), scale.jobs, log
    ):
        return 1
    names = write_outputs(root, args.figures, scale)
    log(f"wrote {args.figures / 'STUDY.md'} and {len(names)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())

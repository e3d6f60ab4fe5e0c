"""Jobs: command lines run as subprocesses, each done when the files it promises exist.

The demo and the study are pipelines of the toolkit's own commands (``training/run.py``,
``analysis/hessian.py``, ...), run as a user would run them, like a Makefile: a :class:`Job`
names its command lines and its outputs, is skipped when every output exists, and (if it has a
``marker``) writes the marker after it succeeded, so a pipeline that is run again resumes where
it stopped. :func:`run_job` runs one in the foreground; :func:`run_jobs` runs many, a few at a
time. A job also states the :class:`Resources` it needs on a cluster (``analysis.pipeline.launch``
turns them into a SLURM request, and a job with several GPUs into ``torchrun`` ranks).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO", "Job", "Resources", "command_line", "log_path", "run_job", "run_jobs"]

REPO = Path(__file__).resolve().parents[2]


def command_line(script: str, *argv) -> tuple[str, ...]:
    """``python <repo>/<script> argv...`` (``script`` such as ``training/run.py``)."""
    return (sys.executable, str(REPO / script), *map(str, argv))


@dataclass(frozen=True)
class Resources:
    """What one job needs on a cluster (the local pool ignores all but ``gpus``).

    Attributes:
        gpus: GPUs in all (0: CPU only); more than one runs the job's commands as that many
            DDP ranks (``torchrun`` on one node, SLURM tasks on several).
        nodes: Nodes the GPUs are spread over (``gpus`` must divide evenly).
        cpus: CPU cores per node.
        mem_gb: Memory per node in GB.
        hours: Time limit of one allocation in hours (a longer job is requeued and resumes).
    """

    gpus: int = 0
    nodes: int = 1
    cpus: int = 1
    mem_gb: float = 4.0
    hours: float = 1.0

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.nodes < 1 or self.cpus < 1 or self.mem_gb <= 0 or self.hours <= 0:
            raise ValueError(f"resources must be positive (gpus may be 0), got {self}")
        if self.nodes > 1 and self.gpus % self.nodes:
            raise ValueError(f"{self.gpus} GPUs do not spread evenly over {self.nodes} nodes")

    @property
    def ranks(self) -> int:
        """Processes of a distributed command (1: a plain process)."""
        return max(1, self.gpus)


@dataclass(frozen=True)
class Job:
    """Command lines run in order; done when every output exists.

    Attributes:
        name: What it makes, for logs.
        commands: Command lines (see :func:`command_line`), run one after the other.
        outputs: The files that mark it done.
        marker: Written after every command succeeded (one of ``outputs``), or None when the
            commands write the outputs themselves.
        resources: What it needs on a cluster; with ``gpus`` > 1 every command must run under
            ``torchrun`` (``training/run.py`` does).
    """

    name: str
    commands: tuple[tuple[str, ...], ...]
    outputs: tuple[Path, ...]
    marker: Path | None = None
    resources: Resources = Resources()

    def done(self) -> bool:
        """Whether every output exists."""
        return all(path.exists() for path in self.outputs)

    def finish(self) -> None:
        """Write the marker (after the commands succeeded)."""
        if self.marker is not None:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text("ok\n")


def log_path(logs: Path, job: Job) -> Path:
    """The log file of ``job`` in folder ``logs`` (its name, made a file name)."""
    return logs / (re.sub(r"[^A-Za-z0-9_.-]+", "_", job.name).strip("_") + ".log")


def run_job(job: Job, env: dict | None = None) -> int:
    """Run a job's commands in the foreground (their output on ours); the first failure's exit
    status, or 0 (the marker then written)."""
    for line in job.commands:
        code = subprocess.run(list(line), env=env).returncode
        if code != 0:
            return code
    job.finish()
    return 0


def run_jobs(
    jobs: Sequence[Job],
    parallel: int,
    log: Callable[[str], None],
    threads: int = 1,
    logs: Path | None = None,
) -> bool:
    """Run the jobs not done yet, ``parallel`` at a time; True when all succeeded.

    Without ``logs`` a job's stdout is discarded and its stderr is ours; with it, both go to the
    job's :func:`log_path`, whose path a failure names.

    After the first failure no new job starts (the running ones finish), so a broken setup costs
    one job, not the whole list; running the pipeline again retries from there.

    Args:
        jobs: The jobs.
        parallel: Jobs at a time.
        log: Called with one line per job started or failed.
        threads: Torch threads per job (``OMP_NUM_THREADS``).
        logs: Folder of the per-job logs (None: see above).
    """
    pending = [job for job in jobs if not job.done()]
    running, ok = [], True
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            log(job.name)
            running.append((job, iter(job.commands), None))
        time.sleep(0.2)
        for entry in list(running):
            job, lines, process = entry
            if process is not None and process.poll() is None:
                continue
            running.remove(entry)
            if process is not None and process.returncode != 0:
                where = f"; log: {log_path(logs, job)}" if logs is not None else ""
                log(f"FAILED ({process.returncode}): {job.name}{where}")
                ok, pending = False, []
                continue
            line = next(lines, None)
            if line is None:
                job.finish()
                continue
            running.append(
                (job, lines, _start(line, env, None if logs is None else log_path(logs, job)))
            )
    return ok


def _start(line: tuple[str, ...], env: dict, log_file: Path | None) -> subprocess.Popen:
    if log_file is None:
        return subprocess.Popen(list(line), env=env, stdout=subprocess.DEVNULL)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as handle:  # the child keeps its own descriptor
        handle.write(f"$ {' '.join(line)}\n")
        handle.flush()
        return subprocess.Popen(list(line), env=env, stdout=handle, stderr=subprocess.STDOUT)

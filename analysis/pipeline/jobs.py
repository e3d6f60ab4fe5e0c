"""Jobs: command lines run as subprocesses, each done when the files it promises exist.

The demo and the study are pipelines of the toolkit's own commands (``training/run.py``,
``analysis/hessian.py``, ...), run as a user would run them, like a Makefile: a :class:`Job`
names its command lines and its outputs, is skipped when every output exists, and (if it has a
``marker``) writes the marker after it succeeded, so a pipeline that is run again resumes where
it stopped. :func:`run_job` runs one in the foreground; :func:`run_jobs` runs many, a few at a
time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REPO", "Job", "command_line", "run_job", "run_jobs"]

REPO = Path(__file__).resolve().parents[2]


def command_line(script: str, *argv) -> tuple[str, ...]:
    """``python <repo>/<script> argv...`` (``script`` such as ``training/run.py``)."""
    return (sys.executable, str(REPO / script), *map(str, argv))


@dataclass(frozen=True)
class Job:
    """Command lines run in order; done when every output exists.

    Attributes:
        name: What it makes, for logs.
        commands: Command lines (see :func:`command_line`), run one after the other.
        outputs: The files that mark it done.
        marker: Written after every command succeeded (one of ``outputs``), or None when the
            commands write the outputs themselves.
    """

    name: str
    commands: tuple[tuple[str, ...], ...]
    outputs: tuple[Path, ...]
    marker: Path | None = None

    def done(self) -> bool:
        """Whether every output exists."""
        return all(path.exists() for path in self.outputs)

    def finish(self) -> None:
        """Write the marker (after the commands succeeded)."""
        if self.marker is not None:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.write_text("ok\n")


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
    jobs: Sequence[Job], parallel: int, log: Callable[[str], None], threads: int = 1
) -> bool:
    """Run the jobs not done yet, ``parallel`` at a time (stdout discarded); True when all
    succeeded.

    After the first failure no new job starts (the running ones finish), so a broken setup costs
    one job, not the whole list; running the pipeline again retries from there.

    Args:
        jobs: The jobs.
        parallel: Jobs at a time.
        log: Called with one line per job started or failed.
        threads: Torch threads per job (``OMP_NUM_THREADS``).
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
                log(f"FAILED ({process.returncode}): {job.name}")
                ok, pending = False, []
                continue
            line = next(lines, None)
            if line is None:
                job.finish()
                continue
            started = subprocess.Popen(list(line), env=env, stdout=subprocess.DEVNULL)
            running.append((job, lines, started))
    return ok

"""Launchers: how a stage's jobs run, on this machine or on a SLURM cluster (through submitit).

A pipeline hands each stage's :class:`~analysis.pipeline.jobs.Job` list to one launcher
(:func:`launcher_for` picks it by the ``--launcher`` flag), which skips the jobs whose outputs
exist and runs the rest. What a job runs is decided in one place, :func:`launch_lines`: its command
lines as they are, or, for a job that asks for several GPUs on one node, the same lines under
``torchrun --standalone``.

- ``local`` (:class:`LocalLauncher`, the default): the toolkit's pool of subprocesses
  (:func:`~analysis.pipeline.jobs.run_jobs`), a few at a time, one log file per job.
- ``slurm`` (:class:`SlurmLauncher`): submitit's executor (Meta, MIT). The pending jobs of a
  stage with the same :class:`~analysis.pipeline.jobs.Resources` go to SLURM as one job array;
  each array task is a :class:`JobTask`, which runs the job's command lines and implements
  submitit's ``Checkpointable``: before the time limit submitit calls its ``checkpoint()``
  (stop the command, resubmit the same task) and requeues the job (at preemption SLURM requeues
  it), and the command resumes from its own checkpoint (``training/run.py --resume``). A job on
  several nodes runs one task per GPU, each a DDP rank whose ``MASTER_ADDR``/``RANK``/
  ``WORLD_SIZE`` come from submitit's ``TorchDistributedEnvironment``. Logs:
  ``<folder>/<job id>_0_log.{out,err}``, named on failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from analysis.pipeline.jobs import Job, Resources, run_jobs
from toolkit.errors import ConfigError
from toolkit.settings import check, option

__all__ = [
    "JobTask",
    "LaunchSettings",
    "LocalLauncher",
    "SlurmLauncher",
    "launch_lines",
    "launcher_for",
    "slurm_parameters",
    "torchrun_line",
]

SLURM_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
"""What SLURM sends a job's processes before it stops them: ``USR2`` before the time limit
(submitit's ``--signal=USR2@<delay>``), ``SIGTERM`` at preemption or cancellation. A job's
command ignores both: the task stops it (``checkpoint()``), or SLURM kills it, and either way the
requeued command resumes from its files; a command that died of the signal would instead make the
task report a failure while SLURM requeues it."""


@dataclass(frozen=True)
class LaunchSettings:
    """Where a pipeline's jobs run (``analysis/study.py``'s launcher flags)."""

    launcher: str = option("local", "where jobs run", choices=("local", "slurm"))
    partition: str | None = option(None, "SLURM partition (slurm; None: the cluster's default)")
    account: str | None = option(None, "SLURM account to charge (slurm)")
    qos: str | None = option(None, "SLURM quality of service (slurm)")
    setup: tuple[str, ...] = option(
        (),
        "shell lines run before each job, e.g. 'source venv/bin/activate' (slurm)",
        empty=True,
    )
    array_parallelism: int = option(64, "array tasks running at once (slurm)", minimum=1)
    max_timeouts: int = option(
        20, "times a job may hit its time limit and be requeued (slurm)", minimum=0
    )
    signal_delay_s: int = option(
        120, "seconds before the time limit that a job is told to stop (slurm)", minimum=10
    )

    def __post_init__(self) -> None:
        check(self)


def torchrun_line(line: Sequence[str], ranks: int) -> tuple[str, ...]:
    """``python script argv...`` as ``ranks`` DDP processes on this node (``torchrun
    --standalone``, the module form, so no console script is needed)."""
    python, script, *argv = line
    run = (python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}")
    return (*run, script, *argv)


def launch_lines(job: Job) -> tuple[tuple[str, ...], ...]:
    """The command lines a launcher starts for ``job``: its own, or with several GPUs on one node
    each under ``torchrun`` (on several nodes SLURM starts one process per rank: the own lines).
    """
    resources = job.resources
    if resources.ranks > 1 and resources.nodes == 1:
        return tuple(torchrun_line(line, resources.ranks) for line in job.commands)
    return job.commands


class LocalLauncher:
    """The jobs on this machine: ``parallel`` subprocesses at a time, ``threads`` torch threads
    each, logs under ``logs``."""

    def __init__(self, parallel: int, logs: Path, threads: int = 1) -> None:
        self.parallel, self.logs, self.threads = parallel, logs, threads

    def run(self, jobs: Sequence[Job], log: Callable[[str], None], name: str = "jobs") -> bool:
        """Run the jobs not done yet; True when all succeeded (see ``run_jobs``; ``name`` is
        SLURM's and unused here).

        Raises:
            ConfigError: If a job needs several nodes (only SLURM gives them).
        """
        for job in jobs:
            if job.resources.nodes > 1 and not job.done():
                raise ConfigError(f"{job.name} needs {job.resources.nodes} nodes; use SLURM")
        local = [replace(job, commands=launch_lines(job)) for job in jobs]
        return run_jobs(local, self.parallel, log, self.threads, self.logs)


def _ignore_slurm_signals() -> None:
    """In the child, before exec (dispositions set to ignore survive exec): ignore what SLURM
    sends, and take SIGINT back to its default, the stop signal of :func:`_stop`, which a driver
    started in the background of a non-interactive shell would otherwise pass on ignored."""
    for number in SLURM_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class JobTask(Checkpointable):
    """One job as a submitit task: its command lines in order, then its marker.

    Calling it runs the job's command lines (``launch_lines``), unless its outputs exist (a
    requeue after the last command); ``threads`` sets ``OMP_NUM_THREADS``. With
    ``distributed`` the task is one rank of a multi-node job: it exports the rank's
    ``torch.distributed`` variables from the SLURM environment, and only rank 0 writes the marker.

    ``checkpoint()`` is submitit's preemption and time-limit hook: it stops the running command
    (SIGINT, on which the toolkit's commands stop cleanly, then SIGKILL after ``grace_s``) and
    returns a ``DelayedSubmission`` of a fresh task of the same job, which submitit requeues; the
    command then resumes from its own checkpoint. The commands ignore :data:`SLURM_SIGNALS`.
    """

    def __init__(
        self, job: Job, distributed: bool = False, threads: int = 1, grace_s: float = 60.0
    ) -> None:
        self.job, self.distributed, self.threads, self.grace_s = job, distributed, threads, grace_s
        self._process: subprocess.Popen | None = None

    def __call__(self) -> str:
        if self.job.done():
            return "done"
        rank, lines = 0, launch_lines(self.job)
        if self.distributed:  # this task is one rank: export its env:// variables
            from submitit.helpers import TorchDistributedEnvironment

            rank = TorchDistributedEnvironment().export(set_cuda_visible_devices=False).rank
            lines = self.job.commands
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        for line in lines:
            print(f"$ {' '.join(line)}", file=sys.stderr, flush=True)
            self._process = subprocess.Popen(list(line), env=env, preexec_fn=_ignore_slurm_signals)
            code = self._process.wait()
            self._process = None
            if code != 0:
                raise RuntimeError(f"{self.job.name}: exit status {code} of {' '.join(line)}")
        if rank == 0:
            self.job.finish()
        return "ran"

    def checkpoint(self, *args, **kwargs):
        """Stop the running command; the same job again, for submitit to requeue."""
        if self._process is not None:
            _stop(self._process, self.grace_s)
        return DelayedSubmission(JobTask(self.job, self.distributed, self.threads, self.grace_s))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_process": None}  # a process does not travel in a pickle


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it (``WNOWAIT``): the ``Popen.wait``
    that the preemption signal interrupted holds the Popen's lock and reaps it afterwards."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT, then SIGKILL after ``grace_s`` seconds; returns once the process has exited."""
    process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while not _exited(process.pid):
        if time.monotonic() > deadline:
            process.kill()
            deadline = float("inf")
        time.sleep(0.05)


def slurm_parameters(resources: Resources, settings: LaunchSettings, name: str) -> dict:
    """submitit ``SlurmExecutor.update_parameters`` (sbatch's names) for jobs with ``resources``.

    One node: one task with all the job's GPUs (``torchrun`` starts the ranks). Several nodes:
    one task per GPU (SLURM starts the ranks), the node's CPUs shared among its tasks.
    """
    per_node = resources.gpus // resources.nodes
    tasks = per_node if resources.nodes > 1 else 1
    parameters = {
        "job_name": name,
        "time": max(1, round(resources.hours * 60)),
        "nodes": resources.nodes,
        "ntasks_per_node": tasks,
        "cpus_per_task": max(1, resources.cpus // tasks),
        "mem": f"{resources.mem_gb:g}GB",
        "array_parallelism": settings.array_parallelism,
        "signal_delay_s": settings.signal_delay_s,
        "additional_parameters": {"requeue": True},
    }
    if per_node:
        parameters["gpus_per_node"] = per_node
    for key in ("partition", "account", "qos"):
        if getattr(settings, key):
            parameters[key] = getattr(settings, key)
    if settings.setup:
        parameters["setup"] = list(settings.setup)
    return parameters


def _local_parameters(slurm: dict) -> dict:
    """The parameters of submitit's local executor that stand for ``slurm``'s (one node)."""
    return {
        "timeout_min": slurm["time"],
        "tasks_per_node": slurm["ntasks_per_node"],
        "gpus_per_node": slurm.get("gpus_per_node", 0),
        "signal_delay_s": slurm["signal_delay_s"],
    }


class SlurmLauncher:
    """The jobs on a SLURM cluster: one job array per group of pending jobs with the same
    resources, each task a :class:`JobTask`; waits for all, and names the log of each failure.

    ``cluster`` is ``slurm`` (the default), or ``local`` for submitit's local executor, which
    runs the same tasks on this machine (tests).
    """

    def __init__(
        self, folder: Path, settings: LaunchSettings, cluster: str = "slurm", threads: int = 1
    ) -> None:
        self.folder, self.settings, self.cluster, self.threads = folder, settings, cluster, threads

    def submit(
        self, jobs: Sequence[Job], log: Callable[[str], None], name: str = "jobs"
    ) -> list[tuple[Job, object]]:
        """Submit the jobs not done yet (SLURM job name ``name``); ``(job, submitit job)`` pairs.

        Raises:
            ConfigError: If SLURM is not there (no ``srun``/``sbatch`` on PATH).
        """
        groups: dict[Resources, list[Job]] = {}
        for job in jobs:
            if not job.done():
                groups.setdefault(job.resources, []).append(job)
        submitted = []
        for resources, group in groups.items():
            parameters = slurm_parameters(resources, self.settings, name)
            timeouts = self.settings.max_timeouts
            if self.cluster == "local":
                executor = submitit.LocalExecutor(self.folder / "%j", timeouts)
                parameters = _local_parameters(parameters)
            else:
                try:
                    executor = submitit.SlurmExecutor(self.folder / "%j", timeouts)
                except RuntimeError as error:  # submitit: 'Could not detect "srun"'
                    raise ConfigError(
                        f"--launcher slurm needs SLURM's srun and sbatch on PATH ({error}); "
                        "run the study on the cluster's login node"
                    ) from None
            executor.update_parameters(**parameters)
            distributed = resources.nodes > 1
            with executor.batch():
                pending = [executor.submit(JobTask(j, distributed, self.threads)) for j in group]
            for job, handle in zip(group, pending):
                log(f"{job.name}: submitted as {handle.job_id}")
            submitted += list(zip(group, pending))
        return submitted

    def run(self, jobs: Sequence[Job], log: Callable[[str], None], name: str = "jobs") -> bool:
        """Submit the jobs not done yet and wait for them; True when all succeeded."""
        ok = True
        for job, handle in self.submit(jobs, log, name):
            try:
                handle.result()
            except Exception as error:  # submitit: FailedJobError, UncompletedJobError
                why = next(  # the exception line of the task's trace, else the first line
                    (line for line in str(error).splitlines() if line.startswith("RuntimeError")),
                    str(error).strip().partition("\n")[0],
                )
                log(f"FAILED: {job.name}; log: {handle.paths.stderr} ({why})")
                ok = False
        return ok


def launcher_for(
    settings: LaunchSettings, root: Path, parallel: int
) -> LocalLauncher | SlurmLauncher:
    """The launcher ``settings.launcher`` names, for a pipeline writing under ``root``: local
    (``parallel`` jobs at a time, logs in ``root/logs``) or slurm (submitit's files and logs in
    ``root/slurm``)."""
    if settings.launcher == "slurm":
        return SlurmLauncher(root / "slurm", settings)
    return LocalLauncher(parallel, root / "logs")

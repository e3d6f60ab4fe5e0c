"""Launchers: the command lines a job runs, the SLURM request submitit sends for each benchmark
(rendered through submitit's own SlurmExecutor with stand-in ``srun``/``sbatch``), the
checkpoint/requeue hook under submitit's own signal handler, and a training job killed under the
local launcher that resumes to the same weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from submitit.core.utils import DelayedSubmission, JobPaths

from analysis.evidence.study_design import BENCHMARKS, PAPER_BENCHMARKS, SCALES, paired_jobs
from analysis.pipeline.jobs import Job, Resources, log_path
from analysis.pipeline.launch import (
    JobTask,
    LaunchSettings,
    LocalLauncher,
    SlurmLauncher,
    launch_lines,
    slurm_parameters,
)
from toolkit.errors import ConfigError
from training.runs.trainer import run_status

PYTHON = sys.executable


def test_a_job_with_several_gpus_on_one_node_runs_under_torchrun():
    line = (PYTHON, "/repo/training/run.py", "--T", "2")
    assert launch_lines(Job("one", (line,), ())) == (line,)
    assert launch_lines(Job("one gpu", (line,), (), resources=Resources(gpus=1))) == (line,)
    (four,) = launch_lines(Job("four", (line,), (), resources=Resources(gpus=4)))
    torchrun = (PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4")
    assert four == (*torchrun, "/repo/training/run.py", "--T", "2")
    # several nodes: SLURM starts one process per rank, each runs the plain line
    assert launch_lines(Job("two nodes", (line,), (), resources=Resources(8, nodes=2))) == (line,)
    with pytest.raises(ValueError, match="do not spread evenly"):
        Resources(gpus=3, nodes=2)


def test_every_benchmark_states_its_design_and_resources():
    from training.runs.presets import get_preset

    for name, benchmark in BENCHMARKS.items():
        assert benchmark.pairs >= 6 and benchmark.stage in ("paired", "temporal")
        if benchmark.preset:  # a preset of --list-presets; its epochs are the design's
            assert get_preset(benchmark.preset).values["epochs"] == benchmark.epochs, name
            assert benchmark.training.gpus >= 1 and benchmark.measuring.gpus == 1
            assert benchmark.why and "--dtype" in benchmark.flatness
    paper = SCALES["paper"]
    assert set(paper.pairs) == set(PAPER_BENCHMARKS) and paper.population is None


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_slurm_parameters_follow_the_benchmark(name):
    benchmark = BENCHMARKS[name]
    settings = LaunchSettings(
        launcher="slurm", partition="gpu", setup=("source venv/bin/activate",)
    )
    train = slurm_parameters(benchmark.training, settings, "t")
    assert train["time"] == round(benchmark.training.hours * 60)
    assert train["partition"] == "gpu" and train["nodes"] == 1
    assert train["ntasks_per_node"] == 1  # one node: torchrun starts the ranks
    assert train.get("gpus_per_node", 0) == benchmark.training.gpus
    assert train["setup"] == ["source venv/bin/activate"]
    assert train["additional_parameters"] == {"requeue": True}


def test_several_nodes_run_one_slurm_task_per_gpu():
    parameters = slurm_parameters(Resources(gpus=16, nodes=2, cpus=64), LaunchSettings(), "x")
    assert parameters["nodes"] == 2 and parameters["ntasks_per_node"] == 8
    assert parameters["gpus_per_node"] == 8 and parameters["cpus_per_task"] == 8
    assert "partition" not in parameters  # the cluster's default


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``srun`` and ``sbatch`` stand-ins on PATH: sbatch keeps each script and answers as SLURM."""
    bin_, scripts = tmp_path / "bin", tmp_path / "scripts"
    bin_.mkdir(), scripts.mkdir()
    (bin_ / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "sbatch").write_text(
        "#!/bin/sh\n"
        f'n=$(ls {scripts} | wc -l)\ncp "$1" {scripts}/$n.sh\n'
        'echo "Submitted batch job $((4242 + n))"\n'
    )
    for path in bin_.iterdir():
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    return scripts


def _sbatch(script: str) -> dict:
    return dict(
        line[len("#SBATCH --") :].partition("=")[::2]
        for line in script.splitlines()
        if line.startswith("#SBATCH --")
    )


@pytest.mark.parametrize("name", PAPER_BENCHMARKS + ("imagenet-sew-resnet34",))
def test_submission_script_per_benchmark(tmp_path, fake_slurm, name):
    benchmark, root = BENCHMARKS[name], tmp_path / "runs"
    jobs = paired_jobs(root, name, SCALES["paper"].only(name), "/data")
    settings = LaunchSettings(launcher="slurm", partition="gpu", setup=("module load cuda",))
    submitted = SlurmLauncher(root / "slurm", settings).submit(jobs, lambda _: None, "train")
    assert [job for job, _ in submitted] == jobs
    assert [handle.job_id for _, handle in submitted] == [f"4242_{k}" for k in range(len(jobs))]
    (script,) = [path.read_text() for path in fake_slurm.iterdir()]
    flags = _sbatch(script)
    resources = benchmark.training
    assert flags["partition"] == "gpu" and flags["job-name"] == "train"
    assert flags["array"] == f"0-{2 * benchmark.pairs - 1}%{2 * benchmark.pairs}"
    assert flags["gpus-per-node"] == str(resources.gpus) and flags["nodes"] == "1"
    assert flags["time"] == str(round(resources.hours * 60))
    assert (
        flags["cpus-per-task"] == str(resources.cpus) and flags["mem"] == f"{resources.mem_gb:g}GB"
    )
    assert flags["signal"] == "USR2@120" and "requeue" in flags
    assert "%A_%a_0_log.err" in flags["error"]  # one log per array task
    assert "module load cuda" in script and "-m submitit.core._submit" in script
    # what each array task runs: a JobTask of its job, the command lines of launch_lines
    pickles = sorted((root / "slurm").rglob("*_submitted.pkl"))
    tasks = [DelayedSubmission.load(path).function for path in pickles]
    assert sorted(t.job.name for t in tasks) == sorted(j.name for j in jobs)
    for task in tasks:
        assert isinstance(task, JobTask) and not task.distributed
        (line,) = launch_lines(task.job)
        assert "--preset" in line and benchmark.preset in line and "--resume" in line
        assert ("torch.distributed.run" in line) == (resources.gpus > 1)
        assert line[line.index("--data-root") + 1] == f"/data/{benchmark.data_folder}"


def test_submission_skips_done_jobs_and_groups_by_resources(tmp_path, fake_slurm):
    done = tmp_path / "done"
    done.write_text("ok\n")
    line = (PYTHON, "-c", "pass")
    jobs = [
        Job("finished", (line,), (done,)),
        Job("a", (line,), (tmp_path / "a",), resources=Resources(gpus=1)),
        Job("b", (line,), (tmp_path / "b",), resources=Resources(gpus=1)),
        Job("c", (line,), (tmp_path / "c",), resources=Resources(gpus=16, nodes=2)),
    ]
    launcher = SlurmLauncher(tmp_path / "slurm", LaunchSettings(launcher="slurm"))
    submitted = launcher.submit(jobs, lambda _: None)
    assert [job.name for job, _ in submitted] == ["a", "b", "c"]
    scripts = sorted(fake_slurm.iterdir())
    assert len(scripts) == 2  # an array of two, and the two-node job alone
    flags = _sbatch(scripts[1].read_text())
    assert flags["nodes"] == "2" and flags["ntasks-per-node"] == "8" and "array" not in flags
    (pickle,) = [p for p in (tmp_path / "slurm").rglob("*_submitted.pkl") if "4243" in p.name]
    assert DelayedSubmission.load(pickle).function.distributed  # each task one DDP rank


def test_slurm_launcher_without_slurm_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    job = Job("a", ((PYTHON, "-c", "pass"),), (tmp_path / "a",))
    launcher = SlurmLauncher(tmp_path / "slurm", LaunchSettings(launcher="slurm"))
    with pytest.raises(ConfigError, match="needs SLURM's srun and sbatch on PATH"):
        launcher.submit([job], lambda _: None)


def test_submitit_local_executor_runs_the_same_tasks(tmp_path):
    """The slurm launcher's code path on submitit's local executor: tasks run, markers are
    written, a failure names its log."""
    marker = tmp_path / "a.done"
    good = Job("a", ((PYTHON, "-c", "print('hello')"),), (marker,), marker)
    bad = Job("b", ((PYTHON, "-c", "import sys; sys.exit(3)"),), (tmp_path / "never",))
    logged = []
    launcher = SlurmLauncher(tmp_path / "slurm", LaunchSettings(launcher="slurm"), "local")
    assert not launcher.run([good, bad], logged.append, "test")
    assert marker.read_text() == "ok\n"
    (failure,) = [line for line in logged if line.startswith("FAILED")]
    log = Path(failure.split("log: ")[1].split(" (")[0])
    assert "FAILED: b" in failure and log.is_file() and "exit status 3" in log.read_text()
    assert launcher.run([good], logged.append)  # done: nothing submitted


@pytest.fixture(params=["default", "ignored"])
def driver_sigint(request):
    """SIGINT in the driver as a terminal gives it, and ignored, as in a background job of a
    non-interactive shell (``nohup study.py ... &``), which its children would inherit."""
    previous = signal.getsignal(signal.SIGINT)
    if request.param == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield request.param
    signal.signal(signal.SIGINT, previous)


def test_checkpoint_stops_the_command_and_resubmits_the_same_job(tmp_path, driver_sigint):
    job = Job("sleeper", ((PYTHON, "-c", "import time; time.sleep(60)"),), (tmp_path / "x",))
    task, errors = JobTask(job, threads=2, grace_s=5), []

    def call():
        try:
            task()
        except RuntimeError as error:
            errors.append(str(error))

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.time() + 30
    while task._process is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # the child has exec'd python
    pid = task._process.pid
    for number in (signal.SIGTERM, signal.SIGUSR2):  # what SLURM sends: ignored
        os.kill(pid, number)
    time.sleep(0.3)
    assert os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    began = time.perf_counter()
    delayed = task.checkpoint()
    thread.join(10)
    assert time.perf_counter() - began < 5 and not thread.is_alive()
    assert errors and "exit status -2" in errors[0]  # stopped by SIGINT
    assert isinstance(delayed, DelayedSubmission) and isinstance(delayed.function, JobTask)
    again = delayed.function
    assert again.job == job and again.threads == 2 and again._process is None
    assert delayed.args == () and delayed.kwargs == {}


def _training_job(root: Path, epochs: int) -> Job:
    scale = replace(SCALES["tiny"], pairs={"digits": 1}, epochs={"digits": epochs}, train_extra=())
    return [j for j in paired_jobs(root, "digits", scale, "data") if " tet " in j.name][0]


def _state(run_dir: Path) -> dict:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of the training job (4 epochs), through the local launcher."""
    root = tmp_path_factory.mktemp("reference")
    job = _training_job(root, 4)
    assert LocalLauncher(1, root / "logs").run([job], lambda _: None) and job.done()
    (run,) = (root / "digits").glob("*-seed0")
    return run


def _wait_for_epoch(run_parent: Path, epoch: int, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in run_parent.glob("*-seed0"):
            try:
                status = run_status(run)
            except Exception:  # a checkpoint being written
                status = None
            if status and status[0] >= epoch:
                return run
        time.sleep(0.05)
    raise AssertionError(f"no epoch {epoch} under {run_parent} within {timeout} s")


def _training_process(out: Path) -> int:
    """The pid of the training process writing under ``out``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"training/run.py") for a in argv) and str(out).encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no training process for {out}")


@pytest.mark.slow
def test_a_job_killed_under_the_local_launcher_resumes_to_the_same_weights(tmp_path, reference):
    root = tmp_path / "runs"
    job, logged = _training_job(root, 4), []
    launcher = LocalLauncher(1, root / "logs")
    result = []
    thread = threading.Thread(target=lambda: result.append(launcher.run([job], logged.append)))
    thread.start()
    run = _wait_for_epoch(root / "digits", 1)
    os.kill(_training_process(root / "digits"), signal.SIGKILL)
    thread.join(120)
    assert result == [False] and run_status(run)[0] < 4, "the run finished before it was killed"
    failure = logged[-1]
    assert failure.startswith("FAILED (-9): train digits tet pair 0; log: ")
    assert Path(failure.split("log: ")[1]) == log_path(root / "logs", job)
    assert not job.done()
    assert launcher.run([job], logged.append) and job.done()  # run again: it resumes
    expected, actual = _state(reference), _state(run)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@pytest.mark.slow
def test_submitit_requeues_a_preempted_task_which_resumes(tmp_path, reference):
    """submitit's own signal handler (the process SLURM starts for a task): USR2 -> the task's
    checkpoint() -> requeue; the requeued task resumes the run to the same weights."""
    root, folder = tmp_path / "runs", tmp_path / "submitit"
    job = _training_job(root, 4)
    paths = JobPaths(folder, job_id="77", task_id=0)
    paths.folder.mkdir(parents=True)
    delayed = DelayedSubmission(JobTask(job, grace_s=20))
    delayed.set_timeout(timeout_min=600, max_num_timeout=3)  # not timed out: preempted
    delayed.dump(paths.submitted_pickle)
    env = {
        **os.environ,
        "SUBMITIT_EXECUTOR": "local",
        "SUBMITIT_LOCAL_JOB_ID": "77",
        "SUBMITIT_LOCAL_NTASKS": "1",
        "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
        "SUBMITIT_LOCAL_NODEID": "0",
        "SUBMITIT_LOCAL_GLOBALID": "0",
        "SUBMITIT_LOCAL_LOCALID": "0",
    }
    task = [PYTHON, "-u", "-m", "submitit.core._submit", str(folder)]
    process = subprocess.Popen(task, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = _wait_for_epoch(root / "digits", 1)
    process.send_signal(signal.SIGUSR2)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 144, output  # submitit's local "requeue me" status
    assert "preempted" in output and run_status(run)[0] < 4 and not job.done()
    requeued = DelayedSubmission.load(paths.submitted_pickle)
    assert isinstance(requeued.function, JobTask) and requeued.function.job == job
    again = subprocess.run(task, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert job.done() and paths.result_pickle.exists()
    expected, actual = _state(reference), _state(run)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


@pytest.mark.slow
def test_a_benchmark_with_two_gpus_trains_under_torchrun_like_one_process(tmp_path, monkeypatch):
    """A benchmark that asks for 2 GPUs per training job: the local launcher starts its runs
    under torchrun (here 2 gloo processes on the CPU), which match the single-process run as
    tests/training/test_distributed.py states: BatchNorm statistics are per rank, so the weights
    are close, not equal."""
    one, two = tmp_path / "one", tmp_path / "two"
    scale = replace(SCALES["tiny"], pairs={"digits": 1}, epochs={"digits": 1}, train_extra=())
    for root, gpus in ((one, 0), (two, 2)):
        digits = replace(BENCHMARKS["digits"], training=Resources(gpus=gpus))
        monkeypatch.setitem(BENCHMARKS, "digits", digits)
        (job,) = [j for j in paired_jobs(root, "digits", scale, "data") if " tet " in j.name]
        assert ("torch.distributed.run" in launch_lines(job)[0]) == (gpus == 2)
        assert LocalLauncher(1, root / "logs").run([job], print), log_path(root / "logs", job)
    (a,), (b,) = ((root / "digits").glob("*-seed0") for root in (one, two))
    a, b = _state(a), _state(b)
    weights = [k for k in a if "weight" in k]
    difference = sum((a[k].float() - b[k].float()).norm() for k in weights)
    assert 0 < difference / sum(a[k].float().norm() for k in weights) < 0.05  # 0: one process


@pytest.mark.slow
def test_slurm_task_layout_two_ranks_train_like_one_process(tmp_path):
    """The multi-node path: each task of the job is one DDP rank and exports its env://
    variables from the job environment (submitit's TorchDistributedEnvironment), then runs the
    plain training line. Two tasks of submitit's local executor stand for two SLURM tasks (gloo
    on the CPU); only rank 0 writes the marker."""
    import submitit

    one, two = tmp_path / "one", tmp_path / "two"
    (single,) = [j for j in paired_jobs(one, "digits", _one_epoch(), "data") if " tet " in j.name]
    assert LocalLauncher(1, one / "logs").run([single], print)
    (job,) = [j for j in paired_jobs(two, "digits", _one_epoch(), "data") if " tet " in j.name]
    executor = submitit.LocalExecutor(tmp_path / "submitit" / "%j")
    executor.update_parameters(tasks_per_node=2, timeout_min=10)
    handle = executor.submit(JobTask(job, distributed=True))
    assert handle.results() == ["ran", "ran"], handle.stderr()
    assert job.done()
    log = "".join(Path(p).read_text() for p in (tmp_path / "submitit").rglob("*_log.err"))
    assert log.count("training/run.py") == 2  # each task ran the plain line, no torchrun
    a, b = (_state(next((root / "digits").glob("*-seed0"))) for root in (one, two))
    weights = [k for k in a if "weight" in k]
    difference = sum((a[k].float() - b[k].float()).norm() for k in weights)
    assert 0 < difference / sum(a[k].float().norm() for k in weights) < 0.05  # 0: one process


def _one_epoch():
    return replace(SCALES["tiny"], pairs={"digits": 1}, epochs={"digits": 1}, train_extra=())

"""Pipeline jobs: done when their outputs exist, markers only after success, parallel runs that
skip finished jobs and start nothing new after a failure (tiny ``python -c`` command lines)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from analysis.pipeline.jobs import REPO, Job, command_line, run_job, run_jobs


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _append(path: Path, text: str) -> tuple[str, ...]:
    return _python(f"open({str(path)!r}, 'a').write({text!r})")


def _exit(code: int) -> tuple[str, ...]:
    return _python(f"import sys; sys.exit({code})")


def _meet(mine: Path, other: Path, timeout: float = 10.0) -> tuple[str, ...]:
    """Create ``mine``, then wait for ``other`` (exit 5 after ``timeout`` s): succeeds only if
    both run at once."""
    return _python(
        "import pathlib, sys, time\n"
        f"pathlib.Path({str(mine)!r}).touch()\n"
        f"deadline = time.time() + {timeout}\n"
        f"while not pathlib.Path({str(other)!r}).exists():\n"
        "    if time.time() > deadline: sys.exit(5)\n"
        "    time.sleep(0.02)\n"
    )


def test_command_line():
    line = command_line("training/run.py", "--T", 4, Path("x"))
    assert line == (sys.executable, str(REPO / "training/run.py"), "--T", "4", "x")
    assert (REPO / "training" / "run.py").is_file()


def test_done_and_finish(tmp_path):
    marker = tmp_path / "deep" / "done.ok"
    other = tmp_path / "other.csv"
    job = Job("j", (), (other, marker), marker)
    assert not job.done()
    other.write_text("x")
    assert not job.done()
    job.finish()
    assert marker.read_text() == "ok\n" and job.done()
    Job("no marker", (), (other,)).finish()  # nothing to write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "other.csv"]
    assert Job("nothing promised", (), ()).done()


def test_run_job_runs_in_order_and_writes_the_marker(tmp_path):
    log, marker = tmp_path / "log.txt", tmp_path / "ok"
    job = Job("two", (_append(log, "a"), _append(log, "b")), (marker,), marker)
    assert run_job(job) == 0
    assert log.read_text() == "ab" and marker.read_text() == "ok\n" and job.done()


def test_run_job_returns_the_first_failure_without_a_marker(tmp_path):
    log, marker = tmp_path / "log.txt", tmp_path / "ok"
    job = Job(
        "fails", (_append(log, "a"), _exit(3), _exit(4), _append(log, "b")), (marker,), marker
    )
    assert run_job(job) == 3
    assert log.read_text() == "a" and not marker.exists() and not job.done()


def test_run_job_passes_the_environment(tmp_path):
    out = tmp_path / "env.txt"
    code = f"import os; open({str(out)!r}, 'w').write(os.environ['PIPELINE_TEST'])"
    assert run_job(Job("env", (_python(code),), ()), env={"PIPELINE_TEST": "42"}) == 0
    assert out.read_text() == "42"


def test_run_jobs_runs_jobs_at_the_same_time(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    jobs = [
        Job("first", (_meet(a, b),), (tmp_path / "first.ok",), tmp_path / "first.ok"),
        Job("second", (_meet(b, a),), (tmp_path / "second.ok",), tmp_path / "second.ok"),
    ]
    logged = []
    start = time.monotonic()
    assert run_jobs(jobs, parallel=2, log=logged.append)
    assert logged == ["first", "second"] and all(job.done() for job in jobs)
    assert time.monotonic() - start < 10


def test_run_jobs_one_at_a_time_cannot_meet(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    jobs = [
        Job("first", (_meet(a, b, timeout=0.5),), (tmp_path / "first.ok",), tmp_path / "first.ok"),
        Job("second", (_meet(b, a),), (tmp_path / "second.ok",), tmp_path / "second.ok"),
    ]
    logged = []
    assert not run_jobs(jobs, parallel=1, log=logged.append)
    assert logged == ["first", "FAILED (5): first"]  # the second never started
    assert not b.exists() and not any(job.done() for job in jobs)


def test_run_jobs_skips_done_jobs(tmp_path):
    ran = tmp_path / "ran.txt"
    done = tmp_path / "done.ok"
    done.write_text("ok\n")
    jobs = [
        Job("finished", (_append(ran, "finished"),), (done,), done),
        Job(
            "new",
            (_append(ran, "new"), _append(ran, "+")),
            (tmp_path / "new.ok",),
            tmp_path / "new.ok",
        ),
    ]
    logged = []
    assert run_jobs(jobs, parallel=2, log=logged.append)
    assert logged == ["new"] and ran.read_text() == "new+" and jobs[1].done()
    logged.clear()
    assert run_jobs(jobs, parallel=2, log=logged.append) and logged == []  # all done: no work


def test_run_jobs_starts_nothing_after_a_failure(tmp_path, capfd):
    slow_done, never, started = tmp_path / "slow.ok", tmp_path / "never.txt", tmp_path / "started"
    # "slow" outlives "broken" by a second (run_jobs polls every 0.2 s), so its slot stays taken
    slow = _python(
        "import pathlib, time\n"
        f"while not pathlib.Path({str(started)!r}).exists(): time.sleep(0.02)\n"
        "time.sleep(1.0)\n"
        "print('hidden')\n"
    )
    broken = _python(f"import pathlib, sys; pathlib.Path({str(started)!r}).touch(); sys.exit(7)")
    jobs = [
        Job("slow", (slow,), (slow_done,), slow_done),
        Job(
            "broken",
            (broken, _append(never, "after")),
            (tmp_path / "broken.ok",),
            tmp_path / "broken.ok",
        ),
        Job("third", (_append(never, "third"),), (tmp_path / "third.ok",), tmp_path / "third.ok"),
    ]
    logged = []
    assert not run_jobs(jobs, parallel=2, log=logged.append)
    assert logged == ["slow", "broken", "FAILED (7): broken"]
    assert slow_done.exists()  # the running job finished and got its marker
    assert not never.exists() and not jobs[1].done() and not jobs[2].done()
    assert "hidden" not in capfd.readouterr().out  # job output is discarded


def test_run_jobs_sets_the_thread_count(tmp_path):
    out = tmp_path / "threads.txt"
    code = (
        f"import os; open({str(out)!r}, 'w').write(os.environ['OMP_NUM_THREADS'] + ',' + "
        "os.environ['MKL_NUM_THREADS'])"
    )
    assert run_jobs(
        [Job("threads", (_python(code),), (out,))], parallel=1, log=lambda _: None, threads=3
    )
    assert out.read_text() == "3,3"

"""The files of a run folder over time: the writer's lock, where to resume, what changed.

A run promises the files :class:`training.runs.layout.RunFiles` names. At the end of each epoch
the trainer writes the snapshot and the logs first and ``last.pt`` last, so ``last.pt`` at epoch N
means every earlier piece was written. A run is complete when ``last.pt`` loads and is at the
final epoch and every promised snapshot loads; a file that exists but does not load (truncated,
replaced) counts as missing, and ``--resume`` recreates it (training is deterministic).
"""

from __future__ import annotations

import contextlib
import csv
import os
import socket
from pathlib import Path
from typing import Iterator

from toolkit.errors import CheckpointError, ConfigError
from training.runs import checkpoint
from training.runs.layout import RunFiles

__all__ = [
    "RUNTIME_FIELDS",
    "run_lock",
    "clean_temporary",
    "clear_run",
    "loadable",
    "resume_point",
    "unloadable",
    "config_changes",
    "refuse_changed",
    "csv_epochs",
    "with_seconds",
]

RUNTIME_FIELDS = ("device", "amp", "compile", "channels_last")
"""Config fields that may change on resume: they do not change the numbers (on CPU)."""
_DERIVED = ("input_shape", "num_classes")


def _holder(path: Path) -> tuple[int, str, str] | None:
    """``(pid, host, SLURM job id or "")`` of a lock's writer (None: unreadable)."""
    try:
        pid, host, *job = path.read_text().split()
        return int(pid), host, job[0] if job else ""
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: tuple[int, str, str] | None) -> bool:
    """Whether a lock's writer is gone: dead on this host, or an earlier run of this SLURM job
    (SLURM kills every process of a job before it requeues it, on whatever node)."""
    if holder is None:
        return True
    pid, host, job = holder
    if job and job == os.environ.get("SLURM_JOB_ID", ""):
        return True
    return host == socket.gethostname() and not _alive(pid)


def _acquire(path: Path) -> None:
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if _stale(holder):
                path.unlink(missing_ok=True)  # stale: its writer died
                continue
            raise CheckpointError(
                f"{path.parent} is being written by process {holder[0]} on {holder[1]} "
                f"(lock {path}); wait for it, or delete the lock if that process is gone"
            ) from None
        with os.fdopen(descriptor, "w") as handle:
            job = os.environ.get("SLURM_JOB_ID", "")
            handle.write(f"{os.getpid()} {socket.gethostname()} {job}".rstrip() + "\n")
        return
    raise CheckpointError(f"cannot take the lock {path}; another writer keeps taking it")


@contextlib.contextmanager
def run_lock(run_dir: Path, enabled: bool = True) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (pid and host, ``O_CREAT | O_EXCL``) while writing a run.

    A lock whose process is dead (on this host) is stale and taken over. A directory created
    here and left empty is removed again.

    Raises:
        CheckpointError: If a live process holds the lock.
    """
    if not enabled:
        yield
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = RunFiles(run_dir).lock
    _acquire(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()


def clean_temporary(run_dir: Path) -> None:
    """Delete ``.*.tmp`` files left by killed writes (call with the lock held)."""
    for path in run_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def clear_run(run_dir: Path) -> None:
    """Delete a run's files, ``last.pt`` first (so a kill here never leaves a complete-looking
    run), then the snapshots, logs and ``config.json``."""
    files = RunFiles(run_dir)
    files.last.unlink(missing_ok=True)
    for path in files.snapshots().values():
        path.unlink(missing_ok=True)
    for path in (files.metrics, files.gradient_stats, files.config):
        path.unlink(missing_ok=True)
    clean_temporary(run_dir)


def loadable(path: Path) -> dict | None:
    """The checkpoint dict of ``path``, or None if it is missing or does not load."""
    try:
        return checkpoint.load_raw(path)
    except CheckpointError:
        return None


def unloadable(run_dir: Path) -> list[Path]:
    """The checkpoints of a run folder that exist but do not load (truncated, replaced)."""
    files = RunFiles(run_dir)
    found = [files.last] if files.last.exists() else []
    return [path for path in [*found, *files.snapshots().values()] if loadable(path) is None]


def resume_point(run_dir: Path, save_every: int) -> tuple[Path | None, int]:
    """The checkpoint to continue from and the epoch it holds (``(None, 0)``: start afresh).

    That is ``last.pt`` when every promised snapshot up to its epoch loads (or a newer snapshot,
    after a kill between the snapshot and ``last.pt``); otherwise the snapshot just before the
    first missing or unloadable one, so that retraining recreates it (training is
    deterministic). A ``last.pt`` that does not load counts as missing.
    """
    files = RunFiles(run_dir)
    last = loadable(files.last) if files.last.exists() else None
    last_epoch = last["epoch"] if last is not None else -1
    found = {epoch: path for epoch, path in files.snapshots().items() if loadable(path)}
    top = max([last_epoch, *(e for e in found if not save_every or e % save_every == 0)])
    if top < 0:
        return None, 0
    promised = range(0, top + 1, save_every) if save_every else ()
    missing = [epoch for epoch in promised if epoch not in found]
    if missing:
        back = missing[0] - save_every
        return (found[back], back) if back >= 0 else (None, 0)
    if last_epoch == top:
        return files.last, top
    return found[top], top


def config_changes(saved: dict, wanted: dict) -> list[str]:
    """``field: old -> new`` for every field that differs (runtime and derived fields aside)."""
    skip = (*RUNTIME_FIELDS, *_DERIVED)
    keys = sorted(k for k in set(saved) | set(wanted) if k not in skip and k in wanted)
    return [f"{k}: {saved.get(k)!r} -> {wanted[k]!r}" for k in keys if saved.get(k) != wanted[k]]


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeError, csv.Error):
        return []


def csv_epochs(path: Path, unique: bool = False) -> set[int] | None:
    """The epochs in a CSV log's ``epoch`` column (empty if missing or unreadable; None if
    ``unique`` and an epoch appears twice)."""
    try:
        epochs = [int(row["epoch"]) for row in _rows(path)]
    except (KeyError, TypeError, ValueError):
        return set()
    return None if unique and len(set(epochs)) != len(epochs) else set(epochs)


def with_seconds(history: list[dict], metrics: Path) -> list[dict]:
    """History rows (from a checkpoint, which keeps no wall-clock values) with the ``seconds``
    of the same epochs in an existing ``metrics.csv`` (empty where unknown)."""
    seconds = {row.get("epoch"): row.get("seconds", "") for row in _rows(metrics)}
    rows = []
    for row in history:
        value = row.get("seconds", seconds.get(str(row.get("epoch")), ""))
        try:
            value = float(value) if value != "" else ""
        except (TypeError, ValueError):
            value = ""
        rows.append({**row, "seconds": value})
    return rows


def refuse_changed(run_dir: Path, saved: dict, wanted: dict) -> None:
    """Raise a one-line ConfigError naming the fields of ``wanted`` that differ from the run's.

    Raises:
        ConfigError: ``--epochs 4`` after 2 included: the cosine schedule depends on the number
            of epochs, so a longer run is not the continuation of a shorter one.
    """
    changed = config_changes(saved, wanted)
    if changed:
        raise ConfigError(
            f"cannot resume {run_dir}: it was trained with another config ({'; '.join(changed)}); "
            "use another --out, or --overwrite to start over"
        )

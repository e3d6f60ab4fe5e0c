"""One training loop for every model and dataset: ``train(config, run_dir) -> Path``.

A run directory holds ``config.json``, ``metrics.csv`` (one row per epoch, both losses logged
whichever is optimized), ``last.pt`` and, with ``save_every``, ``epoch_NNN.pt`` snapshots
(``epoch_000.pt`` is the initialization). Every epoch's randomness comes from a generator seeded
by ``(seed, epoch)`` and the checkpoint is written at the end of each epoch, so a run killed at
any moment and resumed ends with weights bit-identical to an uninterrupted run on CPU.
Under ``torchrun`` the same command trains with DistributedDataParallel (see distributed.py).

The pieces: ``training.runs.run_state`` sets a run up (``RunState``), ``training.runs.epoch``
trains and evaluates one epoch, ``training.runs.run_log`` writes the CSV logs; this module runs
the epochs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from toolkit.errors import CheckpointError, ConfigError, DivergenceError
from toolkit.io import atomic_write_text, resolve_device
from training import models
from training.runs import checkpoint
from training.runs.config import TrainConfig
from training.runs.distributed import init_distributed
from training.runs.epoch import evaluate, train_one_epoch
from training.runs.layout import RunFiles
from training.runs.run_files import (
    clean_temporary,
    clear_run,
    csv_epochs,
    refuse_changed,
    resume_point,
    unloadable,
    run_lock,
    with_seconds,
)
from training.runs.run_log import (
    METRICS,
    check_tensorboard,
    log_scalars,
    tensorboard_writer,
    write_rows,
)
from training.runs.run_state import (
    RunState,
    load_resumed,
    setup_run,
    start_training,
)
from training.snn.losses import get_loss

__all__ = ["check_config", "met_stopping_criterion", "method_at", "run_status", "train"]


def check_config(config: TrainConfig) -> None:
    """Fail fast, before any data is read, on a model or option that cannot be built.

    Raises:
        ConfigError: Naming the bad value and the valid choices.
    """
    if config.model not in models.names():
        raise ConfigError(
            f"unknown model {config.model!r}; known models: {', '.join(models.names())}"
        )
    if config.width is not None and "width" not in models.model_options(config.model):
        raise ConfigError(f"model {config.model!r} has no width option")
    if config.init_from and not Path(config.init_from).is_file():
        raise ConfigError(f"--init-from checkpoint not found: {config.init_from}")
    resolve_device(config.device)


def method_at(config: TrainConfig, epoch: int) -> str:
    """The loss optimized in (0-based) ``epoch``: SDT before ``switch_to_tet_at``, then TET."""
    if config.switch_to_tet_at and epoch >= config.switch_to_tet_at:
        return "tet"
    return config.method


def run_status(run_dir: Path) -> tuple[int, int] | None:
    """``(epochs done, epochs planned)`` of a run directory's ``last.pt``, or None if absent."""
    path = RunFiles(Path(run_dir)).last
    if not path.exists():
        return None
    raw = checkpoint.load_raw(path)
    config = raw["config"] if isinstance(raw["config"], dict) else {}
    return raw["epoch"], raw["epoch"] if raw.get("stopped") else config.get("epochs", raw["epoch"])


def met_stopping_criterion(config: TrainConfig, row: dict) -> bool:
    """Whether an epoch's metrics meet ``stop_at_train_loss`` (train-split L_SDT, eval mode)."""
    threshold = config.stop_at_train_loss
    return bool(threshold) and row.get("train_eval_l_sdt", float("inf")) <= threshold


def _without_seconds(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds"}


def _save(run: RunState, path: Path, epoch: int) -> None:
    """Write a checkpoint of the run after ``epoch`` epochs (rank 0 only).

    Wall-clock values (``seconds``) stay out of checkpoints, so that two runs with the same seed
    write byte-identical files; they are kept in ``metrics.csv`` only.
    """
    if not run.dist.is_main:
        return
    history = [_without_seconds(row) for row in run.history]
    checkpoint.save(
        path,
        run.model,
        run.config.model,
        run.model_kwargs,
        run.stored,
        epoch=epoch,
        metrics=history[-1] if history else {},
        history=history,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        stopped=run.stopped,
        rng={"torch": torch.get_rng_state(), "torch_seed": run.config.seed},
        **(run.tracker.state() if run.tracker else {}),
    )


def _evaluate_epoch(run: RunState, epoch: int) -> dict:
    """Train-split (with ``eval_train``) and, when due, test metrics of the model after an epoch.

    The test split is due every ``test_every`` epochs, after the last epoch, and after the epoch
    that meets the stopping criterion.

    Raises:
        DivergenceError: If an evaluated loss is NaN or infinite.
    """
    config, model, dist, data = run.config, run.model, run.dist, run.data
    options = (config.tet_lambda, config.tet_phi, dist, config.amp)
    dist.sync_buffers(model)  # evaluate on every rank the model that rank 0 saves
    row = {}
    if config.eval_train and data.train_eval is not None:
        train_eval = evaluate(model, data.train_eval, *options)
        row.update({f"train_eval_{k}": v for k, v in train_eval.items() if k != "firing_rate"})
    done = epoch + 1
    due = done % config.test_every == 0 or done == config.epochs
    if due or met_stopping_criterion(config, row):
        test = evaluate(model, data.test, *options)
        row.update({f"test_{k}": v for k, v in test.items() if k != "firing_rate"})
        row["firing_rate"] = test["firing_rate"]
    for key, value in row.items():
        if not math.isfinite(value) and not key.endswith(("_acc", "firing_rate")):
            name = key.replace("l_sdt", "L_SDT").replace("l_tet", "L_TET").replace("_", " ")
            raise DivergenceError(f"{name} became {value} after epoch {done}")
    return row


def _epoch(run: RunState, epoch: int) -> dict:
    """Train one epoch and evaluate; returns the metrics row."""
    began, method = time.perf_counter(), method_at(run.config, epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    loss_fn = get_loss(method, run.config.tet_lambda, run.config.tet_phi)
    row = train_one_epoch(run, epoch, loss_fn)
    evaluated = _evaluate_epoch(run, epoch)
    firing_rate = evaluated.pop("firing_rate", math.nan)
    row.update(evaluated)
    seconds = time.perf_counter() - began
    return {
        "epoch": epoch + 1,
        "method": method,
        "lr": lr,
        **row,
        "firing_rate": firing_rate,
        "seconds": seconds,
    }


def _write_logs(run: RunState) -> None:
    """``metrics.csv`` and ``gradient_stats.csv`` of every epoch so far (rank 0 only)."""
    if run.dist.is_main:
        if run.tracker and run.tracker.rows:
            run.tracker.write(RunFiles(run.run_dir).gradient_stats)
        write_rows(RunFiles(run.run_dir).metrics, run.history, METRICS)


def _finish_epoch(run: RunState, epoch: int) -> None:
    """Log statistics, step the schedule and write the files of ``epoch``: the snapshot and the
    logs first, ``last.pt`` last (so ``last.pt`` never runs ahead of the other files)."""
    config, files, done = run.config, RunFiles(run.run_dir), epoch + 1
    if run.tracker and run.dist.is_main:
        run.history[-1].update(run.tracker.record(done, run.model, run.optimizer))
    run.scheduler.step()
    if config.save_every and done % config.save_every == 0:
        _save(run, files.snapshot(done), done)
    _write_logs(run)
    _save(run, files.last, done)


def _repair_logs(run_dir: Path, raw: dict) -> list[str]:
    """Rewrite the logs of a finished run from its ``last.pt`` where they are missing or short;
    returns the names rewritten."""
    rewritten, epochs, files = [], set(range(1, raw["epoch"] + 1)), RunFiles(run_dir)
    if not files.config.is_file():
        atomic_write_text(files.config, json.dumps(raw["config"], indent=2))
        rewritten.append("config.json")
    if csv_epochs(files.metrics, unique=True) != epochs:
        history = with_seconds(raw.get("history", []), files.metrics)
        write_rows(files.metrics, history, METRICS)
        rewritten.append("metrics.csv")
    stats, path = raw.get("gradient_stats") or [], files.gradient_stats
    if raw["config"].get("gradient_stats") and stats and csv_epochs(path) != epochs:
        write_rows(path, stats, list(stats[0]))
        rewritten.append("gradient_stats.csv")
    return rewritten


def _existing_run(config: TrainConfig, run_dir: Path, resume: bool) -> tuple[Path | None, dict]:
    """The checkpoint to continue from (None: start afresh) and its raw dict.

    Raises:
        CheckpointError: If the directory holds a run and ``resume`` is False.
        ConfigError: If the run to resume was trained with another config.
    """
    if not resume:
        if RunFiles(run_dir).last.exists() or RunFiles(run_dir).snapshots():
            raise CheckpointError(f"{run_dir} already holds a run; pass --resume or --overwrite")
        return None, {}
    for broken in unloadable(run_dir):
        print(f"{broken} does not load; resuming recreates it", file=sys.stderr)
    path, _ = resume_point(run_dir, config.save_every)
    if path is None:
        return None, {}
    raw = checkpoint.load_raw(path)
    saved = raw["config"] if isinstance(raw["config"], dict) else {}
    refuse_changed(run_dir, saved, dataclasses.asdict(config))
    return path, raw


def _epoch_line(row: dict, epochs: int) -> str:
    """One plain progress line per epoch (for logs, where tqdm's bars are hidden)."""
    train_acc = row.get("train_eval_acc", row["train_acc"])
    return (
        f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  acc {train_acc:.4f}  "
        f"test {row.get('test_acc', math.nan):.4f}  {row['seconds']:.1f} s"
    )


def _run_epochs(run: RunState, board) -> None:
    config, dist = run.config, run.dist
    interactive = run.progress and dist.is_main and sys.stderr.isatty()
    epochs = tqdm(
        range(run.start, config.epochs),
        run.run_dir.name,
        initial=run.start,
        total=config.epochs,
        disable=not interactive,
    )
    for epoch in epochs:
        if run.stopped:
            break
        run.history.append(_epoch(run, epoch))
        run.stopped = met_stopping_criterion(config, run.history[-1])
        _finish_epoch(run, epoch)
        row = run.history[-1]
        epochs.set_postfix(test_acc=f"{row.get('test_acc', math.nan):.3f}")
        if run.progress and dist.is_main and not interactive:
            print(_epoch_line(row, config.epochs), file=sys.stderr, flush=True)
        if board is not None:
            log_scalars(board, row)
        dist.barrier()


def _train_locked(config, run_dir, resume, overwrite, progress, tensorboard, dist, device) -> Path:
    files = RunFiles(run_dir)
    if dist.is_main:
        clean_temporary(run_dir)
    path, raw = (None, {}) if overwrite else _existing_run(config, run_dir, resume)
    if path == files.last and (raw["epoch"] >= config.epochs or raw.get("stopped")):
        rewritten = _repair_logs(run_dir, raw) if dist.is_main else []
        note = f", rewrote {', '.join(rewritten)}" if rewritten else ""
        print(f"{run_dir}: complete ({raw['epoch']} epochs){note}, skipped", file=sys.stderr)
        return files.last
    run = setup_run(config, run_dir, dist, device, progress)
    if dist.is_main and path is None:
        clear_run(run_dir)  # --overwrite, or leftovers of a run killed in its first epoch
    dist.barrier()
    if path is not None:
        load_resumed(run, path)
        run.history = with_seconds(run.history, files.metrics)
    start_training(run)
    if dist.is_main:
        atomic_write_text(files.config, json.dumps(run.stored, indent=2))
    if config.save_every and path is None:
        _save(run, files.snapshot(0), 0)
    if run.start:
        _write_logs(run)  # the logs of a resumed run agree with its checkpoint at once
    if path is not None and path != files.last:
        _save(run, files.last, run.start)  # resumed from a snapshot
    board = tensorboard_writer(tensorboard, run_dir.name) if tensorboard and dist.is_main else None
    try:
        _run_epochs(run, board)
    finally:
        if board is not None:
            board.close()
    return files.last


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    tensorboard: str | Path | None = None,
) -> Path:
    """Train a model; returns the path of ``last.pt``.

    Args:
        config: The run's configuration.
        run_dir: Output directory (held under a lock file while training).
        resume: Continue the run in ``run_dir`` (the config must match), finishing any file it
            lacks; a complete run is skipped.
        progress: tqdm bars on a terminal, one plain line per epoch otherwise.
        overwrite: Delete the run in ``run_dir`` (after the checks) and start over.
        tensorboard: Also log every epoch's scalars under ``tensorboard/<run name>``.

    Raises:
        DivergenceError: On a NaN/inf loss; ``last.pt`` then holds the last good epoch.
        ConfigError, DataError, CheckpointError: On bad input, a changed config on resume, or
            another process writing ``run_dir``.
    """
    run_dir = Path(run_dir)
    check_config(config)
    if tensorboard:
        check_tensorboard()
    dist, device = init_distributed(resolve_device(config.device))
    torch.manual_seed(config.seed)  # recorded in every checkpoint's rng entry
    with run_lock(run_dir, dist.is_main):
        return _train_locked(
            config, run_dir, resume, overwrite, progress, tensorboard, dist, device
        )

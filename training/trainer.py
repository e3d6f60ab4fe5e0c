"""One training loop for every model and dataset: ``train(config, run_dir) -> Path``.

A run directory holds ``config.json``, ``metrics.csv`` (one row per epoch, both losses logged
whichever is optimized), ``last.pt`` and, with ``save_every``, ``epoch_NNN.pt`` snapshots
(``epoch_000.pt`` is the initialization). Every epoch's randomness comes from a generator seeded
by ``(seed, epoch)`` and the checkpoint is written at the end of each epoch, so a run killed at
any moment and resumed ends with weights bit-identical to an uninterrupted run on CPU.
Under ``torchrun`` the same command trains with DistributedDataParallel (see distributed.py).

The pieces: ``training.run_state`` sets a run up (``RunState``), ``training.epoch`` trains and
evaluates one epoch, ``training.run_log`` writes the CSV logs; this module runs the epochs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from landscape.io import atomic_write_text, resolve_device
from training import checkpoint, models
from training.config import TrainConfig
from training.distributed import init_distributed
from training.epoch import evaluate, train_one_epoch
from training.errors import ConfigError
from training.losses import get_loss
from training.run_log import METRICS, MomentumTracker, write_rows
from training.run_state import RunState, build_optimizer, model_kwargs_for, setup_run

__all__ = [
    "check_config",
    "resolve_device",
    "model_kwargs_for",
    "build_optimizer",
    "method_at",
    "train_one_epoch",
    "evaluate",
    "train",
    "run_status",
    "RunState",
    "MomentumTracker",
    "METRICS",
]


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
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    raw = checkpoint.load_raw(path)
    return raw["epoch"], raw["config"]["epochs"]


def _save(run: RunState, path: Path, epoch: int) -> None:
    """Write a checkpoint of the run after ``epoch`` epochs (rank 0 only)."""
    if not run.dist.is_main:
        return
    history = run.history
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
        rng={"torch": torch.get_rng_state()},
        **(run.tracker.state() if run.tracker else {}),
    )


def _evaluate_epoch(run: RunState) -> dict:
    """Test (and, with ``eval_train``, train-split) metrics of the model after an epoch."""
    config, model, dist, data = run.config, run.model, run.dist, run.data
    options = (config.tet_lambda, config.tet_phi, dist, config.amp)
    dist.sync_buffers(model)  # evaluate on every rank the model that rank 0 saves
    test = evaluate(model, data.test, *options)
    row = {f"test_{k}": v for k, v in test.items() if k != "firing_rate"}
    if config.eval_train and data.train_eval is not None:
        train_eval = evaluate(model, data.train_eval, *options)
        row.update({f"train_eval_{k}": v for k, v in train_eval.items() if k != "firing_rate"})
    return {**row, "firing_rate": test["firing_rate"]}


def _epoch(run: RunState, epoch: int) -> dict:
    """Train one epoch and evaluate; returns the metrics row."""
    began, method = time.perf_counter(), method_at(run.config, epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    loss_fn = get_loss(method, run.config.tet_lambda, run.config.tet_phi)
    row = train_one_epoch(run, epoch, loss_fn)
    evaluated = _evaluate_epoch(run)
    firing_rate = evaluated.pop("firing_rate")
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


def _finish_epoch(run: RunState, epoch: int) -> None:
    """Log statistics, step the schedule and write the checkpoints and metrics of ``epoch``."""
    config, run_dir, done = run.config, run.run_dir, epoch + 1
    if run.tracker and run.dist.is_main:
        run.history[-1].update(run.tracker.record(done, run.model, run.optimizer))
        run.tracker.write(run_dir / "gradient_stats.csv")
    run.scheduler.step()
    _save(run, run_dir / "last.pt", done)
    if config.save_every and done % config.save_every == 0:
        _save(run, run_dir / f"epoch_{done:03d}.pt", done)
    if run.dist.is_main:
        write_rows(run_dir / "metrics.csv", run.history, METRICS)


def train(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True
) -> Path:
    """Train a model; returns the path of ``last.pt``.

    Args:
        config: The run's configuration.
        run_dir: Output directory.
        resume: Continue from ``run_dir/last.pt`` if it exists (the config must match).
        progress: Show tqdm bars (they are hidden anyway when stderr is not a terminal).

    Raises:
        DivergenceError: On a NaN/inf loss; ``last.pt`` then holds the last good epoch.
        ConfigError, DataError, CheckpointError: On bad input.
    """
    run_dir = Path(run_dir)
    check_config(config)
    dist, device = init_distributed(resolve_device(config.device))
    run = setup_run(config, run_dir, resume, dist, device, progress)
    if dist.is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(run.stored, indent=2))
    if config.save_every and run.start == 0:
        _save(run, run_dir / "epoch_000.pt", 0)
    hidden = None if progress and dist.is_main else True
    epochs = tqdm(
        range(run.start, config.epochs),
        run_dir.name,
        initial=run.start,
        total=config.epochs,
        disable=hidden,
    )
    for epoch in epochs:
        run.history.append(_epoch(run, epoch))
        _finish_epoch(run, epoch)
        epochs.set_postfix(test_acc=f"{run.history[-1]['test_acc']:.3f}")
        dist.barrier()
    return run_dir / "last.pt"

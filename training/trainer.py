"""One training loop for every model and dataset: ``train(config, run_dir) -> Path``.

A run directory holds ``config.json``, ``metrics.csv`` (one row per epoch, both losses logged
whichever is optimized), ``last.pt`` and, with ``save_every``, ``epoch_NNN.pt`` snapshots
(``epoch_000.pt`` is the initialization). Every epoch's randomness comes from a generator seeded
by ``(seed, epoch)`` and the checkpoint is written at the end of each epoch, so a run killed at
any moment and resumed ends with weights bit-identical to an uninterrupted run on CPU.
Under ``torchrun`` the same command trains with DistributedDataParallel (see distributed.py).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from landscape.io import atomic_write_text, resolve_device
from training import checkpoint, models
from training.config import TrainConfig
from training.data import TensorLoader, dataset_for, random_crop_flip
from training.distributed import Distributed, init_distributed
from training.errors import CheckpointError, ConfigError, DataError, DivergenceError
from training.losses import get_loss, loss_terms
from training.momentum import (
    flat_parameters,
    gradient_statistics,
    momentum_subset,
    optimizer_state_norm,
    statistics_rows,
    update_cosine,
)
from training.spikes import spike_counter

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
]

METRICS = [
    "epoch", "method", "lr", "train_loss", "train_acc", "train_l_sdt", "train_l_tet",
    "train_eval_acc", "train_eval_l_sdt", "train_eval_l_tet", "train_eval_l_steps",
    "test_acc", "test_l_sdt", "test_l_tet", "test_l_steps", "firing_rate",
    "grad_norm_sdt", "grad_norm_tet", "momentum_norm", "update_cos", "seconds",
]  # fmt: skip


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


def model_kwargs_for(config: TrainConfig, input_shape: tuple, num_classes: int) -> dict:
    """Build options of the config's model for this data (only those the model takes)."""
    candidates = {
        "num_classes": num_classes,
        "in_channels": input_shape[-3],  # (C, H, W) or (T, C, H, W)
        "image_size": input_shape[-1],
        "T": config.T,
        "tau": config.tau,
        "v_threshold": config.v_threshold,
        "surrogate": config.surrogate,
        "alpha": config.surrogate_alpha,
        "width": config.width,
    }
    accepted = models.model_options(config.model)
    return {k: v for k, v in candidates.items() if k in accepted and v is not None}


def build_optimizer(model: nn.Module, config: TrainConfig):
    """Adam or SGD with a cosine schedule to 0 over the epochs, stepped once per epoch."""
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


def method_at(config: TrainConfig, epoch: int) -> str:
    """The loss optimized in (0-based) ``epoch``: SDT before ``switch_to_tet_at``, then TET."""
    if config.switch_to_tet_at and epoch >= config.switch_to_tet_at:
        return "tet"
    return config.method


def _shard(x: Tensor, dist: Distributed, batch_dim: int) -> Tensor:
    part = dist.shard(x.shape[batch_dim])
    return x[part] if batch_dim == 0 else x[:, part]


def train_one_epoch(
    model: nn.Module,
    loader: TensorLoader,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    lamb: float,
    phi: float,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    progress: bool = True,
    dist: Distributed = Distributed(),
    max_steps: int = 0,
    amp: bool = False,
) -> dict[str, float]:
    """One pass over the training data; running means of the loss, accuracy, L_SDT, L_TET.

    Each rank trains on its shard of the global batch; its mean loss is rescaled so that the
    averaged gradient is the gradient of the global batch mean.

    Raises:
        DivergenceError: When the loss is NaN or infinite (names the step).
    """
    model.train()
    generator = loader.generator(epoch)
    sums, device = [0.0] * 5, loader.device
    steps = min(len(loader), max_steps or len(loader))
    batches = tqdm(loader.batches(epoch, generator), total=steps, desc=f"epoch {epoch + 1}",
                   leave=False, disable=None if progress and dist.is_main else True)  # fmt: skip
    for step, (x, y) in enumerate(batches):
        if step == steps:
            break
        x = augment(x, generator) if augment is not None else x
        total = len(y) * (dist.world if loader.is_sharded else 1)
        if not loader.is_sharded:  # sequences are time-major [T, B, ...]
            x, y = _shard(x, dist, x.ndim - 4), _shard(y, dist, 0)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            outputs = model(x)  # [T, B_local, C]
            loss = loss_fn(outputs.float(), y)
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        (loss * (len(y) * dist.world / total)).backward()
        optimizer.step()
        terms = loss_terms(outputs.detach().float(), y, lamb, phi)
        batch = [loss.item(), terms["l_sdt"].item(), terms["l_tet"].item()]
        sums = [
            s + v for s, v in zip(sums, [v * len(y) for v in batch] + [terms["correct"], len(y)])
        ]
    loss, l_sdt, l_tet, correct, seen = dist.sum([float(s) for s in sums], device)
    names = ("train_loss", "train_l_sdt", "train_l_tet", "train_acc")
    return dict(zip(names, (loss / seen, l_sdt / seen, l_tet / seen, correct / seen)))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: TensorLoader,
    lamb: float,
    phi: float,
    dist: Distributed = Distributed(),
    amp: bool = False,
) -> dict[str, float]:
    """Accuracy, L_SDT, L_TET (sample-weighted) and mean firing rate, in eval mode.

    With several processes each rank evaluates its own disjoint shard and the sums are reduced.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    keys = ("l_sdt", "l_tet", "l_steps")
    sums = [0.0] * 5
    with spike_counter(model) as counts:
        for x, y in loader.batches():
            with torch.autocast(loader.device.type, torch.bfloat16, enabled=amp):
                outputs = model(x).float()
            terms = loss_terms(outputs, y, lamb, phi)
            batch = [terms["correct"].item(), *(terms[k].item() * len(y) for k in keys), len(y)]
            sums = [s + v for s, v in zip(sums, batch)]
    model.train(was_training)
    spikes = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    *totals, seen, spiked, steps = dist.sum(sums + spikes, loader.device)
    rate = spiked / steps if steps else float("nan")
    means = dict(zip(("acc", *keys), (total / seen for total in totals)))
    return {**means, "firing_rate": rate}


def _write_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Write dict rows as a CSV file atomically (columns not in ``fieldnames`` are left out)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def run_status(run_dir: Path) -> tuple[int, int] | None:
    """``(epochs done, epochs planned)`` of a run directory's ``last.pt``, or None if absent."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    raw = checkpoint.load_raw(path)
    return raw["epoch"], raw["config"]["epochs"]


_RUNTIME_FIELDS = ("device", "amp", "compile", "channels_last")  # may change on resume


def _resume_state(run_dir: Path, stored: dict, model, optimizer, scheduler) -> tuple[int, dict]:
    raw = checkpoint.load_raw(run_dir / "last.pt")
    changed = sorted(
        k for k in stored if k not in _RUNTIME_FIELDS and raw["config"].get(k) != stored[k]
    )
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: config differs in {changed}; use a new --out")
    checkpoint.load_state_dict_strict(model, raw["model"]["state_dict"], str(run_dir / "last.pt"))
    optimizer.load_state_dict(raw["optimizer"])
    scheduler.load_state_dict(raw["scheduler"])
    return raw["epoch"], raw


def _init_from(model: nn.Module, path: str) -> None:
    """Copy the weights of another checkpoint (e.g. trained at a smaller T) into ``model``."""
    raw = checkpoint.load_raw(path)
    checkpoint.load_state_dict_strict(model, raw["model"]["state_dict"], f"--init-from {path}")


@dataclasses.dataclass
class _Data:
    train: TensorLoader
    test: TensorLoader
    train_eval: TensorLoader
    augment: Callable | None
    input_shape: tuple
    num_classes: int


def _imagenet_data(config: TrainConfig, device: torch.device, dist: Distributed) -> _Data:
    from training.imagenet import ImageNetLoader, imagenet_datasets

    try:
        train, val = imagenet_datasets(config.data_root)
    except (FileNotFoundError, ImportError) as error:
        raise DataError(str(error).splitlines()[0]) from None
    common = {"device": device, "rank": dist.rank, "world": dist.world}
    train_loader = ImageNetLoader(
        train, config.batch_size, shuffle=True, seed=config.seed, **common
    )
    val_loader = ImageNetLoader(val, max(256, config.batch_size), **common)
    return _Data(train_loader, val_loader, None, None, (3, 224, 224), len(train.classes))


def _make_data(config: TrainConfig, device: torch.device, dist: Distributed) -> _Data:
    """Tensors on the device; test and train-eval splits sharded over ranks without padding."""
    if config.dataset == "imagenet":
        return _imagenet_data(config, device, dist)
    dataset = dataset_for(dataclasses.asdict(config))
    if not len(dataset.y_train) or not len(dataset.y_test):
        sizes = f"{len(dataset.y_train)} train / {len(dataset.y_test)} test"
        raise DataError(
            f"dataset {config.dataset} at {config.data_root} has an empty split ({sizes})"
        )
    eval_batch = max(256, config.batch_size)

    def sharded(x: Tensor, y: Tensor) -> TensorLoader:
        part = dist.shard(len(y))
        return TensorLoader(x[part].to(device), y[part].to(device), eval_batch)

    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    train = TensorLoader(x, y, config.batch_size, shuffle=True, seed=config.seed)
    augment = None
    if config.augment and x.ndim == 5:
        from training.dvs import augment_dvs

        augment = lambda x, g: augment_dvs(x, g, batch_dim=1)  # noqa: E731  [T, B, 2, H, W]
    elif config.augment:
        augment = lambda x, g: random_crop_flip(x, 4, dataset.pad_value, g)  # noqa: E731
    test = sharded(dataset.x_test, dataset.y_test)
    return _Data(train, test, sharded(dataset.x_train, dataset.y_train), augment,
                 dataset.input_shape, dataset.num_classes)  # fmt: skip


def _setup(config: TrainConfig, run_dir: Path, resume: bool, dist: Distributed, device):
    """Model, optimizer, schedule, data and the resumed history of a run."""
    data = _make_data(config, device, dist)
    kwargs = model_kwargs_for(config, data.input_shape, data.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = models.build(config.model, **kwargs).to(device)
    if config.init_from:
        _init_from(model, config.init_from)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(model, config)
    stored = {**dataclasses.asdict(config), "input_shape": list(data.input_shape),
              "num_classes": data.num_classes}  # fmt: skip
    start, resumed = 0, {}
    if (run_dir / "last.pt").exists():
        if not resume:
            raise CheckpointError(f"{run_dir} already holds a run; pass --resume or --overwrite")
        start, resumed = _resume_state(run_dir, stored, model, optimizer, scheduler)
    return model, kwargs, optimizer, scheduler, data, stored, start, resumed


def _forward_model(model: nn.Module, config: TrainConfig, dist: Distributed, device) -> nn.Module:
    """The module the training steps call: DDP-wrapped and/or compiled around ``model``."""
    if dist.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(model) if config.compile else model


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
    model, kwargs, optimizer, scheduler, data, stored, start, resumed = _setup(
        config, run_dir, resume, dist, device
    )
    history = list(resumed.get("history", []))
    tracker = MomentumTracker(config, data.train, model, resumed) if config.gradient_stats else None
    if dist.is_main:
        text = json.dumps(stored, indent=2)
        atomic_write_text(run_dir / "config.json", text)
    forward_model = _forward_model(model, config, dist, device)

    def save(path: Path, epoch: int) -> None:
        if dist.is_main:
            checkpoint.save(
                path, model, config.model, kwargs, stored, epoch=epoch, metrics=history[-1] if
                history else {}, history=history, optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(), rng={"torch": torch.get_rng_state()},
                **(tracker.state() if tracker else {}),
            )  # fmt: skip

    if config.save_every and start == 0:
        save(run_dir / "epoch_000.pt", 0)
    show = None if progress and dist.is_main else True
    epochs = tqdm(range(start, config.epochs), run_dir.name, initial=start, total=config.epochs,
                  disable=show)  # fmt: skip
    for epoch in epochs:
        history.append(_epoch(config, epoch, forward_model, model, optimizer, data, dist, progress))
        if tracker and dist.is_main:
            history[-1].update(tracker.record(epoch + 1, model, optimizer))
            tracker.write(run_dir / "gradient_stats.csv")
        scheduler.step()
        save(run_dir / "last.pt", epoch + 1)
        if config.save_every and (epoch + 1) % config.save_every == 0:
            save(run_dir / f"epoch_{epoch + 1:03d}.pt", epoch + 1)
        if dist.is_main:
            _write_rows(run_dir / "metrics.csv", history, METRICS)
        epochs.set_postfix(test_acc=f"{history[-1]['test_acc']:.3f}")
        dist.barrier()
    return run_dir / "last.pt"


class MomentumTracker:
    """Per-epoch gradient-momentum statistics on a fixed training subset (training.momentum).

    The subset (``stats_samples`` samples of the training split, seeded with 0, so every run of a
    dataset shares it) and the batch size are fixed, so the logged values equal the ones computed
    later from the saved checkpoint of the same epoch.
    """

    def __init__(self, config: TrainConfig, train: TensorLoader, model: nn.Module, resumed: dict):
        self.lamb, self.phi = config.tet_lambda, config.tet_phi
        x, y = momentum_subset(train.x, train.y, config.stats_samples)
        self.batches = list(TensorLoader(x, y, 256).batches())
        self.rows = list(resumed.get("gradient_stats", []))
        previous = resumed.get("previous_parameters")
        self.trajectory = ([previous] if previous is not None else []) + [flat_parameters(model)]

    def record(self, epoch: int, model: nn.Module, optimizer) -> dict:
        """Compute the statistics at the end of ``epoch``; returns the metrics.csv columns."""
        stats = gradient_statistics(model, self.batches, self.lamb, self.phi)
        self.trajectory = (self.trajectory + [flat_parameters(model)])[-3:]
        cosine = update_cosine(*self.trajectory) if len(self.trajectory) == 3 else float("nan")
        summary = {
            "grad_norm_sdt": stats["sdt"]["grad_norm"],
            "grad_norm_tet": stats["tet"]["grad_norm"],
            "momentum_norm": optimizer_state_norm(optimizer),
            "update_cos": cosine,
        }
        self.rows += statistics_rows(stats, epoch)
        self.rows += [{"epoch": epoch, "loss": "", "quantity": k, "t": "", "s": "", "layer": "",
                       "value": summary[k]} for k in ("momentum_norm", "update_cos")]  # fmt: skip
        return summary

    def state(self) -> dict:
        """Checkpoint entries that let a resumed run continue the statistics exactly."""
        return {"gradient_stats": self.rows, "previous_parameters": self.trajectory[-2]
                if len(self.trajectory) > 1 else None}  # fmt: skip

    def write(self, path: Path) -> None:
        _write_rows(path, self.rows, list(self.rows[0]))


def _epoch(config, epoch, forward_model, model, optimizer, data: _Data, dist, progress) -> dict:
    """Train one epoch and evaluate; returns the metrics row."""
    began, method = time.perf_counter(), method_at(config, epoch)
    lr = optimizer.param_groups[0]["lr"]
    loss_fn = get_loss(method, config.tet_lambda, config.tet_phi)
    lamb, phi, amp = config.tet_lambda, config.tet_phi, config.amp
    row = train_one_epoch(forward_model, data.train, loss_fn, optimizer, epoch, lamb, phi,
                          data.augment, progress, dist, config.steps_per_epoch, amp)  # fmt: skip
    dist.sync_buffers(model)  # evaluate on every rank the model that rank 0 saves
    test = evaluate(model, data.test, lamb, phi, dist, amp)
    row.update({f"test_{k}": v for k, v in test.items() if k != "firing_rate"})
    if config.eval_train and data.train_eval is not None:
        train_eval = evaluate(model, data.train_eval, lamb, phi, dist, amp)
        row.update({f"train_eval_{k}": v for k, v in train_eval.items() if k != "firing_rate"})
    seconds = time.perf_counter() - began
    return {"epoch": epoch + 1, "method": method, "lr": lr, **row,
            "firing_rate": test["firing_rate"], "seconds": seconds}  # fmt: skip

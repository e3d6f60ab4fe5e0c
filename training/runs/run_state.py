"""The state of one training run and how it is set up: data, model, optimizer, resumed history.

``setup_run`` turns a config and a run directory into a ``RunState``, the one object the epoch
loop (``training.runs.trainer``) and the training steps (``training.runs.epoch``) read and update.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from toolkit.errors import CheckpointError, ConfigError, DataError
from training import models
from training.data.datasets import TensorLoader, dataset_for, random_crop_flip
from training.runs import checkpoint
from training.runs.config import TrainConfig
from training.runs.distributed import Distributed
from training.runs.run_files import refuse_changed
from training.runs.run_log import MomentumTracker

__all__ = [
    "RunData",
    "RunState",
    "make_data",
    "model_kwargs_for",
    "build_optimizer",
    "setup_run",
    "load_resumed",
    "start_training",
]


@dataclasses.dataclass
class RunData:
    """The loaders of a run (on the device) and what the model needs to know about the data."""

    train: TensorLoader
    test: TensorLoader
    train_eval: TensorLoader | None
    augment: Callable[[Tensor, torch.Generator], Tensor] | None
    input_shape: tuple
    num_classes: int


@dataclasses.dataclass
class RunState:
    """Everything a training run holds between epochs.

    Attributes:
        config: The run's configuration.
        run_dir: Output directory.
        dist: Rank and world size.
        device: Where the model and data live.
        data: Loaders and data shape.
        model: The model that is saved and evaluated.
        model_kwargs: Options of ``training.models.build`` that rebuild ``model``.
        optimizer: The optimizer.
        scheduler: The per-epoch learning-rate schedule.
        stored: The config as stored in ``config.json`` and checkpoints (plus the data shape).
        start: First epoch to train (0-based; > 0 when resumed).
        history: One metrics row per finished epoch.
        tracker: Gradient-momentum statistics, or None when they are off.
        stopped: The stopping criterion (``stop_at_train_loss``) was met: no further epoch.
        forward_model: The module the training steps call (DDP-wrapped and/or compiled).
        progress: Show tqdm bars.
    """

    config: TrainConfig
    run_dir: Path
    dist: Distributed
    device: torch.device
    data: RunData
    model: nn.Module
    model_kwargs: dict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    stored: dict
    start: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    tracker: MomentumTracker | None = None
    stopped: bool = False
    forward_model: nn.Module | None = None
    progress: bool = True


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


def _imagenet_data(config: TrainConfig, device: torch.device, dist: Distributed) -> RunData:
    from training.data.imagenet import ImageNetLoader, imagenet_datasets

    try:
        train, val = imagenet_datasets(config.data_root)
    except (FileNotFoundError, ImportError) as error:
        raise DataError(str(error).splitlines()[0]) from None
    common = {"device": device, "rank": dist.rank, "world": dist.world}
    train_loader = ImageNetLoader(
        train, config.batch_size, shuffle=True, seed=config.seed, **common
    )
    val_loader = ImageNetLoader(val, max(256, config.batch_size), **common)
    return RunData(train_loader, val_loader, None, None, (3, 224, 224), len(train.classes))


def _augmentation(config: TrainConfig, x: Tensor, pad_value: tuple) -> Callable | None:
    """The on-device augmentation of the training batches, or None."""
    if config.augment and x.ndim == 5:
        from training.data.dvs import augment_dvs

        return lambda x, g: augment_dvs(x, g, batch_dim=1)  # [T, B, 2, H, W]
    if config.augment:
        return lambda x, g: random_crop_flip(x, 4, pad_value, g)
    return None


def make_data(config: TrainConfig, device: torch.device, dist: Distributed) -> RunData:
    """Tensors on the device; test and train-eval splits sharded over ranks without padding."""
    if config.dataset == "imagenet":
        return _imagenet_data(config, device, dist)
    dataset = dataset_for(config)
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
    augment = _augmentation(config, x, dataset.pad_value)
    test = sharded(dataset.x_test, dataset.y_test)
    train_eval = sharded(dataset.x_train, dataset.y_train)
    return RunData(train, test, train_eval, augment, dataset.input_shape, dataset.num_classes)


def _build_model(config: TrainConfig, kwargs: dict, device: torch.device) -> nn.Module:
    """The model, initialized with ``config.seed`` (global RNG untouched), optionally from
    ``config.init_from``'s weights, in channels-last format if asked."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = models.build(config.model, **kwargs).to(device)
    if config.init_from:
        # e.g. TIT: a checkpoint trained at a smaller T
        raw = checkpoint.load_raw(config.init_from)
        where = f"--init-from {config.init_from}"
        checkpoint.load_state_dict_strict(model, raw["model"]["state_dict"], where)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def load_resumed(state: RunState, path: Path) -> dict:
    """Load a checkpoint of the run into the state's model, optimizer, schedule, history and
    torch RNG; returns the raw dict.

    Raises:
        ConfigError: If the checkpoint was trained with another config (names the fields).
        CheckpointError: If it is unreadable or its weights do not fit the model.
    """
    raw = checkpoint.load_raw(path)
    saved = raw["config"] if isinstance(raw["config"], dict) else {}
    refuse_changed(state.run_dir, saved, dataclasses.asdict(state.config))
    checkpoint.load_state_dict_strict(state.model, raw["model"]["state_dict"], str(path))
    try:
        state.optimizer.load_state_dict(raw["optimizer"])
        state.scheduler.load_state_dict(raw["scheduler"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: optimizer state does not fit: {error}") from None
    rng = raw.get("rng") or {}
    if isinstance(rng.get("torch"), torch.Tensor):
        torch.set_rng_state(rng["torch"])
    state.start = raw["epoch"]
    state.stopped = bool(raw.get("stopped", False))
    state.history = list(raw.get("history", []))
    if state.config.gradient_stats:
        state.tracker = MomentumTracker(state.config, state.data.train, state.model, raw)
    return raw


def _dry_forward(config: TrainConfig, data: RunData, model: nn.Module) -> None:
    """One forward pass on two training samples in eval mode, before anything is written.

    Raises:
        ConfigError: If the model does not take the data's samples or its output does not have
            one value per class (names the shapes).
    """
    if not isinstance(data.train, TensorLoader):
        return
    x, _ = next(TensorLoader(data.train.x[:2], data.train.y[:2], 2).batches())
    where = f"model {config.model} on {config.dataset} samples of shape {list(data.input_shape)}"
    was_training = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            outputs = model.eval()(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ConfigError(f"{where} fails: {reason or type(error).__name__}") from None
    finally:
        model.train(was_training)
    if outputs.ndim != 3 or outputs.shape[-1] != data.num_classes:
        raise ConfigError(
            f"{where} gives outputs of shape {list(outputs.shape)}; expected [T, B, "
            f"{data.num_classes}] ({data.num_classes} classes)"
        )


def _forward_model(state: RunState) -> nn.Module:
    """The module the training steps call: DDP-wrapped and/or compiled around the model."""
    model = state.model
    if state.dist.world > 1:
        ids = [state.device.index] if state.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(model) if state.config.compile else model


def setup_run(
    config: TrainConfig,
    run_dir: Path,
    dist: Distributed,
    device: torch.device,
    progress: bool = True,
) -> RunState:
    """Data, model, optimizer, schedule and statistics tracker of a run at epoch 0, after a dry
    forward pass (continue a run with :func:`load_resumed`).

    Raises:
        ConfigError: If the model does not fit the data.
        DataError: If the data cannot be read or is malformed.
    """
    data = make_data(config, device, dist)
    kwargs = model_kwargs_for(config, data.input_shape, data.num_classes)
    model = _build_model(config, kwargs, device)
    _dry_forward(config, data, model)
    optimizer, scheduler = build_optimizer(model, config)
    shape = {"input_shape": list(data.input_shape), "num_classes": data.num_classes}
    stored = {**dataclasses.asdict(config), **shape}
    state = RunState(
        config, run_dir, dist, device, data, model, kwargs, optimizer, scheduler, stored
    )
    state.progress = progress
    if config.gradient_stats:
        state.tracker = MomentumTracker(config, data.train, model, {})
    return state


def start_training(state: RunState) -> None:
    """Wrap the model for the training steps (DDP and/or torch.compile)."""
    state.forward_model = _forward_model(state)

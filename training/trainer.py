"""One training loop for every model and dataset: ``train(config, run_dir) -> Path``.

A run directory holds ``config.json``, ``metrics.csv`` (one row per epoch, both losses logged
whichever is optimized), ``last.pt`` and, with ``save_every``, ``epoch_NNN.pt`` snapshots
(``epoch_000.pt`` is the initialization). Every epoch's randomness comes from a generator seeded
by ``(seed, epoch)`` and the checkpoint is written at the end of each epoch, so a run killed at
any moment and resumed ends with weights bit-identical to an uninterrupted run on CPU.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from tqdm import tqdm

from training import checkpoint, models
from training.config import TrainConfig
from training.data import Dataset, TensorLoader, dataset_for, random_crop_flip
from training.errors import CheckpointError, ConfigError, DivergenceError
from training.losses import get_loss, loss_terms
from training.neurons import LIF

__all__ = [
    "check_config",
    "resolve_device",
    "model_kwargs_for",
    "build_optimizer",
    "spike_counter",
    "train_one_epoch",
    "evaluate",
    "train",
    "run_status",
]

METRICS = [
    "epoch", "lr", "train_loss", "train_acc", "train_l_sdt", "train_l_tet",
    "train_eval_acc", "train_eval_l_sdt", "train_eval_l_tet",
    "test_acc", "test_l_sdt", "test_l_tet", "firing_rate", "seconds",
]  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


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
    resolve_device(config.device)


def model_kwargs_for(config: TrainConfig, dataset: Dataset) -> dict:
    """Build options of the config's model for this dataset (only those the model takes)."""
    shape = dataset.input_shape  # (C, H, W) or (T, C, H, W)
    candidates = {
        "num_classes": dataset.num_classes,
        "in_channels": shape[-3],
        "image_size": shape[-1],
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


@contextlib.contextmanager
def spike_counter(model: nn.Module) -> Iterator[dict[str, list[float]]]:
    """Count spikes of every LIF layer during the forwards inside the block.

    Yields:
        ``{layer_name: [spikes, neuron_steps]}``, filled as forwards run; hooks are removed after.
    """
    counts: dict[str, list[float]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, LIF):
            counts[name] = [0.0, 0.0]

            def hook(module, inputs, output, name=name):
                counts[name][0] += float(output.detach().sum())
                counts[name][1] += output.numel()

            handles.append(module.register_forward_hook(hook))
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _mean_rate(counts: dict[str, list[float]]) -> float:
    spikes, total = (sum(c[i] for c in counts.values()) for i in (0, 1))
    return spikes / total if total else float("nan")


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
) -> dict[str, float]:
    """One pass over the training data; returns running means of the loss, accuracy, L_SDT, L_TET.

    Raises:
        DivergenceError: When the loss is NaN or infinite (names the step).
    """
    model.train()
    generator = loader.generator(epoch)
    sums = {"train_loss": 0.0, "train_l_sdt": 0.0, "train_l_tet": 0.0, "train_acc": 0.0}
    seen = 0
    batches = tqdm(loader.batches(epoch, generator), total=len(loader), desc=f"epoch {epoch + 1}",
                   leave=False, disable=None if progress else True)  # fmt: skip
    for step, (x, y) in enumerate(batches):
        if augment is not None:
            x = augment(x, generator)
        outputs = model(x)  # [T, B, C]
        loss = loss_fn(outputs, y)
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            terms = loss_terms(outputs.detach(), y, lamb, phi)
        n = len(y)
        seen += n
        sums["train_loss"] += loss.item() * n
        sums["train_l_sdt"] += terms["l_sdt"].item() * n
        sums["train_l_tet"] += terms["l_tet"].item() * n
        sums["train_acc"] += terms["correct"].item()
    return {key: value / seen for key, value in sums.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loader: TensorLoader, lamb: float, phi: float) -> dict[str, float]:
    """Accuracy, L_SDT, L_TET (sample-weighted) and mean firing rate, in eval mode.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    totals = {"acc": 0.0, "l_sdt": 0.0, "l_tet": 0.0}
    seen = 0
    with spike_counter(model) as counts:
        for x, y in loader.batches():
            terms = loss_terms(model(x), y, lamb, phi)
            seen += len(y)
            totals["acc"] += terms["correct"].item()
            totals["l_sdt"] += terms["l_sdt"].item() * len(y)
            totals["l_tet"] += terms["l_tet"].item() * len(y)
    model.train(was_training)
    return {**{k: v / seen for k, v in totals.items()}, "firing_rate": _mean_rate(counts)}


def _prefixed(prefix: str, values: dict) -> dict:
    return {
        f"{prefix}_{key}": value
        for key, value in values.items()
        if key != "firing_rate" or prefix == "test"
    }


def _write_metrics(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    checkpoint.atomic_write(path, lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def run_status(run_dir: Path) -> tuple[int, int] | None:
    """``(epochs done, epochs planned)`` of a run directory's ``last.pt``, or None if absent."""
    path = Path(run_dir) / "last.pt"
    if not path.exists():
        return None
    raw = checkpoint.load_raw(path)
    return raw["epoch"], raw["config"]["epochs"]


def _resume_state(run_dir: Path, config: dict, model, optimizer, scheduler) -> tuple[int, list]:
    raw = checkpoint.load_raw(run_dir / "last.pt")
    stored = {k: v for k, v in raw["config"].items() if k != "device"}
    if stored != {k: v for k, v in config.items() if k != "device"}:
        changed = sorted(k for k in config if k != "device" and stored.get(k) != config[k])
        raise ConfigError(f"cannot resume {run_dir}: config differs in {changed}; use a new --out")
    checkpoint.load_state_dict_strict(model, raw["model"]["state_dict"], str(run_dir / "last.pt"))
    optimizer.load_state_dict(raw["optimizer"])
    scheduler.load_state_dict(raw["scheduler"])
    return raw["epoch"], list(raw["history"])


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
    device = resolve_device(config.device)
    dataset = dataset_for(dataclasses.asdict(config))
    kwargs = model_kwargs_for(config, dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = models.build(config.model, **kwargs).to(device)
    optimizer, scheduler = build_optimizer(model, config)
    stored = {**dataclasses.asdict(config), "input_shape": list(dataset.input_shape),
              "num_classes": dataset.num_classes}  # fmt: skip
    start, history = 0, []
    if resume and (run_dir / "last.pt").exists():
        start, history = _resume_state(run_dir, stored, model, optimizer, scheduler)
    elif (run_dir / "last.pt").exists():
        raise CheckpointError(f"{run_dir} already holds a run; pass --resume or --overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(stored, indent=2)
    checkpoint.atomic_write(run_dir / "config.json", lambda tmp: Path(tmp).write_text(config_text))

    train_loader = TensorLoader(dataset.x_train.to(device), dataset.y_train.to(device),
                                config.batch_size, shuffle=True, seed=config.seed)  # fmt: skip
    test_loader = TensorLoader(dataset.x_test.to(device), dataset.y_test.to(device),
                               max(256, config.batch_size))  # fmt: skip
    train_eval_loader = TensorLoader(train_loader.x, train_loader.y, test_loader.batch_size)
    augment = None
    if config.augment:
        augment = lambda x, g: random_crop_flip(x, 4, dataset.pad_value, g)  # noqa: E731
    loss_fn = get_loss(config.method, config.tet_lambda, config.tet_phi)
    save = lambda path, epoch: checkpoint.save(  # noqa: E731
        path, model, config.model, kwargs, stored, epoch=epoch, step=epoch * len(train_loader),
        metrics=history[-1] if history else {}, history=history, optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(), rng={"torch": torch.get_rng_state()},
    )  # fmt: skip
    if config.save_every and start == 0:
        save(run_dir / "epoch_000.pt", 0)
    epochs = tqdm(range(start, config.epochs), desc=run_dir.name, initial=start,
                  total=config.epochs, disable=None if progress else True)  # fmt: skip
    for epoch in epochs:
        began = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        row = train_one_epoch(model, train_loader, loss_fn, optimizer, epoch, config.tet_lambda,
                              config.tet_phi, augment, progress)  # fmt: skip
        scheduler.step()
        row.update(
            _prefixed("test", evaluate(model, test_loader, config.tet_lambda, config.tet_phi))
        )
        if config.eval_train:
            train_eval = evaluate(model, train_eval_loader, config.tet_lambda, config.tet_phi)
            row.update(_prefixed("train_eval", train_eval))
        row["firing_rate"] = row.pop("test_firing_rate")
        history.append(
            {"epoch": epoch + 1, "lr": lr, **row, "seconds": time.perf_counter() - began}
        )
        save(run_dir / "last.pt", epoch + 1)
        if config.save_every and (epoch + 1) % config.save_every == 0:
            save(run_dir / f"epoch_{epoch + 1:03d}.pt", epoch + 1)
        _write_metrics(run_dir / "metrics.csv", history)
        epochs.set_postfix(acc=f"{row['train_acc']:.3f}", test=f"{row['test_acc']:.3f}")
    return run_dir / "last.pt"

"""``TrainConfig``: one flat, frozen dataclass; argparse flags are generated from its fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from training.data import DATASETS
from training.errors import ConfigError
from training.neurons import SURROGATES

__all__ = [
    "ArgumentParser",
    "TrainConfig",
    "add_config_args",
    "option",
    "apply_defaults",
    "config_from_args",
    "load_config_file",
]


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2), without the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def option(default, help: str, **extra):
    """A dataclass field whose metadata (help, choices) becomes a command-line flag."""
    return field(default=default, metadata={"help": help, **extra})


_f = option
_METHODS = ("sdt", "tet")
DERIVED_FIELDS = ("input_shape", "num_classes")
"""Keys of a run's config.json that come from the data, not from the user (ignored on input)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in ``config.json`` and every checkpoint."""

    model: str = _f("digits_snn", "registered model name (see training.models.names())")
    dataset: str = _f("digits", "dataset", choices=DATASETS)
    data_root: str = _f("data", "dataset folder (for npz: the .npz file)")
    upsample: int = _f(1, "digits only: nearest-neighbour upsampling factor of the 8x8 images")
    T: int = _f(4, "number of time steps (static images are repeated T times)")
    encoding: str = _f(
        "static",
        "mnist1d only: static (the 40-sample signal at every step) | sequence (40/T samples per "
        "step; T must divide 40)",
        choices=("static", "sequence"),
    )
    mnist1d_samples: int = _f(
        5000, "mnist1d only: generated samples, split 4:1 train:test (package default 5000)"
    )
    mnist1d_validation: float = _f(
        0.0,
        "mnist1d only: evaluate on this last fraction of the training split, held out, instead "
        "of the test split (to choose settings; 0: test split)",
    )
    method: str = _f(
        "tet", "training loss: sdt (CE of the mean output) | tet (TET Eq. 13)", choices=_METHODS
    )
    tet_lambda: float = _f(0.05, "weight of the MSE term (TET Eq. 13; paper: 0.05 CIFAR, 1e-3 DVS)")
    tet_phi: float = _f(1.0, "target of the MSE term (TET Eq. 12; paper: V_th = 1)")
    epochs: int = _f(15, "training epochs")
    batch_size: int = _f(64, "samples per optimizer step (global, over all processes)")
    optimizer: str = _f("adam", "optimizer", choices=("adam", "sgd"))
    lr: float = _f(5e-3, "peak learning rate, cosine-annealed to 0 (paper code: 1e-3 Adam)")
    momentum: float = _f(0.9, "SGD momentum (ignored by Adam)")
    weight_decay: float = _f(0.0, "L2 weight decay")
    augment: bool = _f(False, "random crop (padding 4) + horizontal flip, on the device")
    seed: int = _f(0, "seed of initialization, shuffling and augmentation")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    eval_train: bool = _f(
        True, "evaluate the training split in eval mode every epoch (train_eval_*)"
    )
    gradient_stats: bool = _f(True, "log gradient-momentum statistics every epoch (momentum.py)")
    stats_samples: int = _f(256, "training samples (fixed, seed 0) for the gradient statistics")
    save_every: int = _f(0, "also keep epoch_NNN.pt every N epochs (0: only last.pt)")
    switch_to_tet_at: int = _f(0, "optimize L_SDT until this epoch, then L_TET (Fig. 3; 0: off)")
    init_from: str = _f("", "start from this checkpoint's weights (TIT: trained at a smaller T)")
    amp: bool = _f(False, "bf16 autocast for forward passes (GPU)")
    channels_last: bool = _f(False, "channels-last memory format for convolutions")
    compile: bool = _f(False, "torch.compile the training forward (analyses always use eager)")
    steps_per_epoch: int = _f(0, "stop each epoch after this many steps (0: all; smoke tests)")
    tau: float = _f(0.5, "LIF leak factor (TET: 0.5)")
    v_threshold: float = _f(1.0, "LIF firing threshold (TET: 1.0)")
    surrogate: str = _f("triangle", "surrogate derivative", choices=tuple(SURROGATES))
    surrogate_alpha: float | None = _f(
        None, "triangle width gamma (TET: 1) or sigmoid/arctan slope; default per surrogate"
    )
    width: float | None = _f(None, "channel-width multiplier for the paper models (1.0: paper)")

    def __post_init__(self) -> None:
        _check_types(self)
        for ok, message in self._range_checks() + self._mnist1d_checks():
            if not ok:
                raise ConfigError(message)

    def _range_checks(self) -> list[tuple[bool, str]]:
        choices = [
            (f.name, getattr(self, f.name), f.metadata["choices"])
            for f in dataclasses.fields(self)
            if "choices" in f.metadata
        ]
        alpha, width = self.surrogate_alpha, self.width
        return [
            *((v in c, f"{n} must be one of {', '.join(c)}, got {v!r}") for n, v, c in choices),
            (self.T >= 1, f"T must be >= 1, got {self.T}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (0.0 <= self.tet_lambda <= 1.0, f"tet_lambda must be in [0, 1], got {self.tet_lambda}"),
            (0 < self.lr < float("inf"), f"lr must be a finite number > 0, got {self.lr}"),
            (self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.upsample >= 1, f"upsample must be >= 1, got {self.upsample}"),
            (self.stats_samples >= 1, f"stats_samples must be >= 1, got {self.stats_samples}"),
            (self.save_every >= 0, f"save_every must be >= 0 (0: off), got {self.save_every}"),
            (
                self.steps_per_epoch >= 0,
                f"steps_per_epoch must be >= 0 (0: all), got {self.steps_per_epoch}",
            ),
            (0 <= self.tau <= 1, f"tau (leak factor) must be in [0, 1], got {self.tau}"),
            (self.v_threshold > 0, f"v_threshold must be > 0, got {self.v_threshold}"),
            (alpha is None or alpha > 0, f"surrogate_alpha must be > 0, got {alpha}"),
            (width is None or width > 0, f"width must be > 0, got {width}"),
            (
                _is_device(self.device),
                f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
            ),
            (self.switch_to_tet_at >= 0, "switch_to_tet_at must be >= 0"),
            (
                not self.switch_to_tet_at or self.method == "sdt",
                "switch_to_tet_at needs method sdt",
            ),
        ]

    def _mnist1d_checks(self) -> list[tuple[bool, str]]:
        is_mnist1d = self.dataset == "mnist1d"
        return [
            (
                self.encoding in ("static", "sequence"),
                f"encoding must be static or sequence, got {self.encoding!r}",
            ),
            (is_mnist1d or self.encoding == "static", "encoding sequence needs dataset mnist1d"),
            (
                not is_mnist1d or self.encoding == "static" or 40 % self.T == 0,
                f"encoding sequence needs T dividing the 40 MNIST-1D samples, got T={self.T}",
            ),
            (self.mnist1d_samples >= 10, "mnist1d_samples must be >= 10 (one per class)"),
            (0.0 <= self.mnist1d_validation < 1.0, "mnist1d_validation must be in [0, 1)"),
            (
                not (is_mnist1d and self.augment),
                "augment (crop + flip of images) is not for mnist1d",
            ),
        ]

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _is_device(name: str) -> bool:
    index = name[5:] if name.startswith("cuda:") else "0"
    return name in ("auto", "cpu", "cuda") or (index.isdigit() and name.startswith("cuda:"))


def _check_types(config) -> None:
    """Refuse values of the wrong type (e.g. ``"false"`` for a bool, null for a number)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), _base_type(hints[f.name])
        optional = kind is not hints[f.name]
        if value is None and optional:
            continue
        if kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and value == value  # not NaN
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            expected = {bool: "true or false", int: "an integer", float: "a number"}
            wanted = expected.get(kind, kind.__name__) + (" or null" if optional else "")
            raise ConfigError(f"{f.name} must be {wanted}, got {value!r}")


def _base_type(annotation) -> type:
    """``float | None`` -> float; ``int`` -> int."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_config_args(
    parser: argparse.ArgumentParser, cls=TrainConfig, exclude=(), title: str | None = None
) -> None:
    """Add one ``--flag-name`` per dataclass field, with the field's default, help and choices.

    The toolkit's one config-to-flags generator: training and every analysis command use it.
    Fields are declared with :func:`option` (``choices`` in its metadata become argparse choices).
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "") + " (default: %(default)s)"
        if kind is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
            )
        else:
            choices = f.metadata.get("choices")
            group.add_argument(flag, type=kind, default=f.default, choices=choices, help=help_text)


def load_config_file(path: str | Path) -> dict:
    """Read a JSON config file (a dict of field values)."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of field values")
    return values


def config_from_args(args: argparse.Namespace, cls=TrainConfig):
    """Build the config from parsed flags (presets and --config files enter as parser defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def apply_defaults(parser: argparse.ArgumentParser, values: dict, cls=TrainConfig) -> None:
    """Make ``values`` (a preset or a --config file) the parser defaults; explicit flags still win.

    Raises:
        ConfigError: On a key that is not a field of ``cls``.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in values.items() if k not in DERIVED_FIELDS or k in known}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown config field(s) {sorted(unknown)}; known: {sorted(known)}")
    parser.set_defaults(**values)

"""What every measure evaluates: a checkpoint read once, its model and a fixed subset of its data.

:class:`DataSpec` selects the samples (split, number, seed, batch size); :func:`load_input` turns
a :class:`~training.runs.checkpoint.Checkpoint` and a spec into an :class:`EvalInput` (the model
in eval mode, the fixed batches and their record); :meth:`EvalInput.loss` builds one loss of it
(SDT, TET at the run's λ and φ, or ``L_t = CE(O(t), y)`` of one time step) as a
:class:`LossObjective`, whose Hessian every curvature measure shares. The engine is reached only
through :mod:`landscape.api`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch
from torch import Tensor, nn

from landscape import api
from landscape.normalized import NormalizedOperator, weight_scale
from landscape.objective import Objective
from landscape.operators import HessianOperator
from toolkit.errors import ConfigError
from toolkit.io import DEVICES
from toolkit.settings import check, option
from training.data.datasets import DATA_FIELDS, Dataset, TensorLoader, dataset_for
from training.runs.checkpoint import Checkpoint
from training.runs.config import TrainConfig
from training.snn.gradient_stats import momentum_subset
from training.snn.losses import get_loss, loss_terms, per_step_ce

__all__ = [
    "LOSSES",
    "SUBSETS",
    "DataSettings",
    "DataSpec",
    "Datasets",
    "EvalInput",
    "Evaluation",
    "LossObjective",
    "PointMetrics",
    "load_input",
    "loss_function",
    "parse_loss",
    "resolve_dtype",
    "sample_indices",
    "select",
    "tensor_digest",
]

LOSSES = ("checkpoint", "sdt", "tet")
SUBSETS = ("seeded", "trainer")


@dataclass(frozen=True)
class DataSpec:
    """Which samples an analysis evaluates.

    Attributes:
        split: ``train`` or ``test``.
        samples: Size of the subset; ``None``: the whole split, in order.
        seed: Seed of the ``seeded`` subset.
        batch_size: Samples per batch (results of the analyses do not depend on it).
        subset: ``seeded``: a seeded subset, sorted (:func:`sample_indices`); ``trainer``: the
            subset the trainer logs gradient statistics on (``momentum_subset``, seed 0).
        chunk: With ``seeded``: the ``chunk``-th of the disjoint blocks that the seeded
            permutation cuts the split into (0: its first block).
        block: Size of those blocks (None: ``samples``); a smaller ``samples`` takes the first
            of its block, so a subset of a protocol's chunk ``k`` lies inside that chunk.
    """

    split: str = "train"
    samples: int | None = 1024
    seed: int = 0
    batch_size: int = 256
    subset: str = "seeded"
    chunk: int = 0
    block: int | None = None

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")


@dataclass(frozen=True)
class DataSettings:
    """The shared flags of the analysis commands: which loss, which samples, where, how."""

    loss: str = option("checkpoint", "loss: the checkpoint's method, or sdt / tet", choices=LOSSES)
    time_step: int | None = option(None, "analyse L_t = CE(O[t], y) of time step t only", minimum=0)
    samples: int | None = option(1024, "size of the fixed, seeded subset of the split", minimum=1)
    split: str = option(
        "train", "dataset split of the samples (train in every command)", choices=("train", "test")
    )
    batch_size: int = option(
        256, "samples per forward pass; results do not depend on it", minimum=1
    )
    device: str = option("auto", "auto: cuda when available", choices=DEVICES)
    dtype: str = option(
        "float32", "dtype of parameters, data and products", choices=("float32", "float64")
    )
    seed: int = option(0, "seed of the sample subset and of the random probes")

    def __post_init__(self) -> None:
        check(self)
        if self.time_step is not None and self.loss != "checkpoint":
            raise ConfigError(f"--time-step analyses L_t = CE(O[t], y); drop --loss {self.loss}")

    def spec(self) -> DataSpec:
        """The samples these settings select."""
        return DataSpec(self.split, self.samples, self.seed, self.batch_size)

    def dry_run(self) -> DataSettings:
        """At most 32 samples."""
        return replace(self, samples=min(self.samples or 32, 32))


def resolve_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` -> the torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def sample_indices(
    num_total: int, num_samples: int, seed: int, chunk: int = 0, block: int | None = None
) -> Tensor:
    """A fixed, seeded subset of ``range(num_total)``, sorted, ``[min(num_samples, num_total)]``:
    the first ``num_samples`` of the ``chunk``-th block of ``block`` (default ``num_samples``)
    of a seeded permutation (blocks are disjoint).

    Raises:
        ConfigError: If the split has fewer than ``chunk + 1`` disjoint blocks.
    """
    block = num_samples if block is None else block
    if chunk and (chunk + 1) * block > num_total:
        raise ConfigError(
            f"data chunk {chunk} of {block} samples needs {(chunk + 1) * block}; "
            f"the split has {num_total}"
        )
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_total, generator=generator)
    start = chunk * block
    return order[start : start + min(num_samples, block)].sort().values


def tensor_digest(tensor: Tensor) -> str:
    """sha256 of a tensor's bytes (to record a data subset)."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


@dataclass
class Datasets:
    """The datasets of the checkpoints one command reads, each loaded once."""

    loaded: dict = field(default_factory=dict)

    def of(self, config: TrainConfig) -> Dataset:
        """The dataset ``config`` was trained on (its generation and encoding settings too)."""
        key = tuple(getattr(config, name) for name in DATA_FIELDS)
        if key not in self.loaded:
            self.loaded[key] = dataset_for(config)
        return self.loaded[key]


def _select(dataset: Dataset, config: TrainConfig, spec: DataSpec) -> tuple[Tensor, Tensor, dict]:
    """The samples of ``spec`` and their record."""
    x, y = (
        (dataset.x_train, dataset.y_train)
        if spec.split == "train"
        else (dataset.x_test, dataset.y_test)
    )
    record = {"dataset": config.dataset, "split": spec.split}
    if spec.subset == "trainer":
        x, y = momentum_subset(x, y, len(y) if spec.samples is None else spec.samples)
        return x, y, {**record, "num_samples": len(y), "subset": "trainer"}
    if spec.samples is None:
        return x, y, {**record, "num_samples": len(y), "batch_size": spec.batch_size}
    indices = sample_indices(len(y), spec.samples, spec.seed, spec.chunk, spec.block)
    record.update(num_samples=len(indices), seed=spec.seed, batch_size=spec.batch_size)
    if spec.chunk:
        record["chunk"] = spec.chunk
    return x[indices], y[indices], {**record, "indices_sha256": tensor_digest(indices)}


def parse_loss(name: str) -> tuple[str, int | None]:
    """``"sdt"`` -> ``("sdt", None)``; ``"ce_t2"`` -> ``("checkpoint", 2)``; ``"tet@0.05"`` (TET at
    a fixed lambda, whatever the run's) -> ``("tet@0.05", None)``.

    Raises:
        ValueError: On another name.
    """
    if name in ("sdt", "tet", "checkpoint") or _fixed_lambda(name) is not None:
        return name, None
    if name.startswith("ce_t") and name[4:].isdigit():
        return "checkpoint", int(name[4:])
    raise ValueError(f"loss must be sdt, tet or ce_t<t>, got {name!r}")


def loss_function(
    config: TrainConfig, loss: str = "checkpoint", time_step: int | None = None
) -> tuple[Callable[[Tensor, Tensor], Tensor], str]:
    """The loss of outputs ``[T, B, C]`` and labels ``[B]`` of a run, and its name.

    Args:
        config: The run's config (its method, λ, φ and T).
        loss: ``checkpoint`` (the training method), ``sdt`` or ``tet``.
        time_step: If given, ``L_t = CE(O[t], y)`` instead (``loss`` must be ``checkpoint``).

    Raises:
        ConfigError: On an unknown loss, a time step outside ``[0, T)``, or both options.
    """
    if time_step is not None:
        if loss != "checkpoint":
            raise ConfigError(
                f"--time-step analyses L_t = CE(O[t], y); it cannot be combined with --loss {loss}"
            )
        if not 0 <= time_step < config.T:
            raise ConfigError(
                f"--time-step must be in [0, T-1] = [0, {config.T - 1}], got {time_step}"
            )
        return (lambda outputs, labels: per_step_ce(outputs, labels)[time_step]), f"ce_t{time_step}"
    fixed = _fixed_lambda(loss)
    if fixed is not None:
        name = f"tet(lambda={fixed}, phi={config.tet_phi})"
        return get_loss("tet", fixed, config.tet_phi), name
    method = config.method if loss == "checkpoint" else loss
    if method not in ("sdt", "tet"):
        raise ConfigError(f"unknown loss {method!r}; expected one of {LOSSES}")
    name = method if method == "sdt" else f"tet(lambda={config.tet_lambda}, phi={config.tet_phi})"
    return get_loss(method, config.tet_lambda, config.tet_phi), name


def _fixed_lambda(name: str) -> float | None:
    """The lambda of ``tet@<lambda>``, else None."""
    if not name.startswith("tet@"):
        return None
    try:
        value = float(name[4:])
    except ValueError:
        return None
    return value if 0.0 <= value <= 1.0 else None


@dataclass(frozen=True)
class PointMetrics:
    """``(outputs [T, B, C], labels [B]) -> {l_sdt, l_tet, accuracy}`` as batch sums: what every
    point of a surface or a perturbation records (both losses from one forward).

    Attributes:
        lamb: TET's lambda (weight of the MSE term).
        phi: TET's phi (target of the MSE term).
    """

    lamb: float
    phi: float

    @classmethod
    def of(cls, config: TrainConfig) -> PointMetrics:
        """The metrics of a run: TET at its own lambda and phi."""
        return cls(config.tet_lambda, config.tet_phi)

    def __call__(self, outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        terms, n = loss_terms(outputs, labels, self.lamb, self.phi), len(labels)
        return {
            "l_sdt": terms["l_sdt"] * n,
            "l_tet": terms["l_tet"] * n,
            "accuracy": terms["correct"],
        }


@dataclass
class LossObjective:
    """One loss of one checkpoint on its fixed samples, and its Hessian (one cached gradient
    graph, shared by every curvature measure of this loss).

    Attributes:
        name: ``sdt``, ``tet(lambda=..., phi=...)`` or ``ce_t<t>``.
        objective: Loss, gradient and Hessian-vector products (``landscape.api.objective``).
    """

    name: str
    objective: Objective
    normalized_operators: dict = field(default_factory=dict)

    @cached_property
    def hessian(self) -> HessianOperator:
        """The autograd surrogate Hessian (gradient graph kept: one pass per product)."""
        return HessianOperator(self.objective)

    def normalized(self, eta: float) -> NormalizedOperator:
        """``diag(|w| + eta) H diag(|w| + eta)``, the Hessian in rescaling-invariant units."""
        if eta not in self.normalized_operators:
            scale = weight_scale(self.objective, eta=eta)
            self.normalized_operators[eta] = NormalizedOperator(self.hessian, scale)
        return self.normalized_operators[eta]


@dataclass(frozen=True)
class Evaluation:
    """How a command evaluates its checkpoints, shared by every measure it runs.

    Attributes:
        loss: ``checkpoint`` (the run's training loss), ``sdt`` or ``tet``.
        time_step: Analyse ``L_t = CE(O(t), y)`` of this time step instead (None: off).
        dtype: Dtype of parameters, data and products.
        device: Where to evaluate.
        seed: Seed of random probes, start vectors and directions.
        quiet: No progress on stderr.
    """

    loss: str = "checkpoint"
    time_step: int | None = None
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    seed: int = 0
    quiet: bool = False


@dataclass(frozen=True)
class EvalInput:
    """What an analysis evaluates: a checkpoint's model and fixed batches.

    Attributes:
        checkpoint: The checkpoint, read once (path, sha256, typed config).
        model: The model, in eval mode, on the requested device.
        loader: The fixed samples (no shuffling) on the model's device.
        batches: ``list(loader.batches())``.
        data: Record of the samples (dataset, split, number, seed, digest of the indices).
    """

    checkpoint: Checkpoint
    model: nn.Module
    loader: TensorLoader
    batches: list[tuple[Tensor, Tensor]]
    data: dict

    @property
    def config(self) -> TrainConfig:
        return self.checkpoint.config

    def loss(
        self,
        loss: str = "checkpoint",
        time_step: int | None = None,
        *,
        param_names: list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> LossObjective:
        """The objective of one loss (see :func:`loss_function`) on these batches.

        Args:
            loss: ``checkpoint``, ``sdt``, ``tet``, or a name of :func:`parse_loss`.
            time_step: ``L_t`` of this time step instead.
            param_names: Differentiate these parameters only (a layer's Hessian block).
            dtype: Dtype of parameters, data and products.
            device: Where to evaluate.
        """
        if time_step is None:
            loss, time_step = parse_loss(loss)
        loss_fn, name = loss_function(self.config, loss, time_step)
        objective = api.objective(
            self.model,
            loss_fn,
            self.batches,
            param_names=param_names,
            dtype=dtype,
            device=device,
        )
        return LossObjective(name, objective)


def load_input(
    checkpoint: Checkpoint,
    data: DataSpec = DataSpec(),
    device: torch.device | str = "cpu",
    datasets: Datasets | None = None,
) -> EvalInput:
    """A checkpoint's model and the fixed samples of ``data``, both on ``device``.

    Args:
        checkpoint: Read by :func:`training.runs.checkpoint.read`.
        data: The samples.
        device: Where to put the model and the batches.
        datasets: Datasets already loaded by this command (one is made otherwise).

    Raises:
        toolkit.errors.ToolkitError: On a dataset that cannot be read, or weights that do not
            fit the model.
    """
    dataset = (datasets or Datasets()).of(checkpoint.config)
    x, y, record = _select(dataset, checkpoint.config, data)
    loader = TensorLoader(x.to(device), y.to(device), data.batch_size)
    model = checkpoint.model(device)
    return EvalInput(checkpoint, model, loader, list(loader.batches()), record)


def select(
    datasets: Datasets, config: TrainConfig, spec: DataSpec
) -> tuple[list[tuple[Tensor, Tensor]], dict]:
    """The fixed batches of ``spec`` from a run's dataset (on the CPU), and their record."""
    x, y, record = _select(datasets.of(config), config, spec)
    return list(TensorLoader(x, y, spec.batch_size).batches()), record

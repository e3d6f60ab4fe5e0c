"""Permutation alignment of two networks of one architecture by weight matching.

Ainsworth, Hayase & Srinivasa (2023), "Git Re-Basin: merging models modulo permutation
symmetries", Sec. 3.2, Alg. 1: the hidden units of a layer can be permuted without changing the
function, provided the next layer's inputs are permuted alike (LIF neurons act unit by unit, so
this holds for SNNs as for ReLU networks). Weight matching picks, for each permuted layer, the
permutation of network B's units that maximizes the inner product ``<W_a, P W_b>`` of every
tensor the permutation touches, with the others held fixed: a linear assignment
(``scipy.optimize.linear_sum_assignment``), by coordinate descent over the layers in a seeded
random order until no layer improves.

A :class:`PermutationSpec` lists, per permutation, the (tensor, axis, block) it acts on: a
layer's output axis, the next layer's input axis, and the BatchNorm weight, bias and running
statistics of the layer's channels; ``block`` > 1 where a flatten turns each channel into
``block`` consecutive inputs of a linear layer. :func:`spec_of` derives it for the registered
models that are chains of conv/linear layers (``CHAIN_MODELS``) and for the residual models
(``RESIDUAL_MODELS``), whose blocks share one permutation along each skip path: a block's output
channels are added to its input's, so they must be permuted alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from toolkit.errors import ConfigError

__all__ = [
    "CHAIN_MODELS",
    "RESIDUAL_MODELS",
    "PermutationSpec",
    "spec_of",
    "permute",
    "random_permutations",
    "weight_matching",
    "Alignment",
]

CHAIN_MODELS = ("mnist1d_snn", "digits_snn", "spiking_mlp", "vggsnn", "vggsnn_woap")
"""Registered models whose layers form one chain (no skip path)."""
RESIDUAL_MODELS = ("resnet19", "spiking_resnet34", "sew_resnet34")
"""Registered models with skip paths (``training.models.resnet``): a stage's blocks share one
permutation of the channels they add to."""

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class PermutationSpec:
    """Which axes of which tensors each permutation acts on.

    Attributes:
        sizes: Permutation name -> number of units.
        axes: Permutation name -> ``[(tensor name, axis, block), ...]``.
        matched: The tensors weight matching compares (the parameters; running statistics are
            permuted, not matched).
    """

    sizes: dict[str, int]
    axes: dict[str, list[tuple[str, int, int]]]
    matched: frozenset[str]


def spec_of(model: nn.Module, model_name: str) -> PermutationSpec:
    """The permutation spec of a registered model: one permutation per hidden layer's units,
    and for the residual models one per stage's skip path (shared by every block that adds to
    it) and one per block's inner layer.

    Raises:
        ConfigError: If the model is neither one of :data:`CHAIN_MODELS` nor of
            :data:`RESIDUAL_MODELS`.
    """
    if model_name in RESIDUAL_MODELS:
        return _residual_spec(model)
    if model_name not in CHAIN_MODELS:
        raise ConfigError(
            f"permutation alignment supports the models {[*CHAIN_MODELS, *RESIDUAL_MODELS]}, "
            f"not {model_name!r}; pass --no-align"
        )
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHTED + _NORMS)]
    weighted = [n for n, m in layers if isinstance(m, _WEIGHTED)]
    spec = _SpecBuilder()
    current = None
    for name, module in layers:
        if isinstance(module, _NORMS):
            spec.norm(name, current)
            continue
        if current is not None:
            inputs = module.weight.shape[1]
            if inputs % spec.sizes[current]:
                raise ConfigError(
                    f"{name}: {inputs} inputs are not blocks of {spec.sizes[current]}"
                )
            spec.add(current, f"{name}.weight", 1, inputs // spec.sizes[current])
        if name == weighted[-1]:
            break
        current = spec.new(module.weight.shape[0])
        spec.outputs(name, module, current)
    return spec.build(model)


class _SpecBuilder:
    """Collects permutations and the axes they act on."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.axes: dict[str, list[tuple[str, int, int]]] = {}

    def new(self, size: int) -> str:
        name = f"P{len(self.sizes)}"
        self.sizes[name], self.axes[name] = size, []
        return name

    def add(self, perm: str, tensor: str, axis: int, block: int = 1) -> None:
        self.axes[perm].append((tensor, axis, block))

    def outputs(self, name: str, module: nn.Module, perm: str) -> None:
        self.add(perm, f"{name}.weight", 0)
        if module.bias is not None:
            self.add(perm, f"{name}.bias", 0)

    def norm(self, name: str, perm: str) -> None:
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            self.add(perm, f"{name}.{tensor}", 0)

    def conv_bn(self, name: str, pair: nn.Module, inputs: str | None, outputs: str) -> None:
        """A ``conv_bn`` (``SeqToANN(conv, bn)``) named ``name`` from ``inputs`` to ``outputs``."""
        if inputs is not None:
            self.add(inputs, f"{name}.0.weight", 1)
        self.outputs(f"{name}.0", pair[0], outputs)
        self.norm(f"{name}.1", outputs)

    def build(self, model: nn.Module) -> PermutationSpec:
        matched = frozenset(n for n, _ in model.named_parameters())
        return PermutationSpec(self.sizes, self.axes, matched)


def _residual_spec(model: nn.Module) -> PermutationSpec:
    """ResNet-19 and the ImageNet ResNets: a block's output is added to its input (or to its
    downsampled input), so every block of a stream shares the stream's permutation; a
    downsampling block starts a new stream."""
    spec = _SpecBuilder()
    stream = spec.new(model.stem[0].out_channels)
    spec.conv_bn("stem", model.stem, None, stream)
    stages = [getattr(model, f"layer{k}") for k in range(1, 5) if hasattr(model, f"layer{k}")]
    for index, stage in enumerate(stages, 1):
        for number, block in enumerate(stage):
            prefix = f"layer{index}.{number}"
            inner = spec.new(block.conv1[0].out_channels)
            spec.conv_bn(f"{prefix}.conv1", block.conv1, stream, inner)
            if block.downsample is not None:
                following = spec.new(block.conv2[0].out_channels)
                spec.conv_bn(f"{prefix}.downsample", block.downsample, stream, following)
                stream = following
            spec.conv_bn(f"{prefix}.conv2", block.conv2, inner, stream)
    if hasattr(model, "fc1"):  # ResNet-19: pool -> fc1 -> LIF -> fc2
        hidden = spec.new(model.fc1[0].out_features)
        spec.add(stream, "fc1.0.weight", 1)
        spec.outputs("fc1.0", model.fc1[0], hidden)
        spec.add(hidden, "fc2.0.weight", 1)
    else:
        spec.add(stream, "fc.0.weight", 1)
    return spec.build(model)


def _index(perm: Tensor, block: int) -> Tensor:
    return (perm[:, None] * block + torch.arange(block)).flatten()


def permute(
    spec: PermutationSpec, perms: dict[str, Tensor], state: dict[str, Tensor], skip: str = ""
) -> dict[str, Tensor]:
    """``state`` with its units permuted: unit ``i`` of a layer becomes its old unit
    ``perms[p][i]`` (a new dict; tensors not in the spec are kept; permutation ``skip`` is left
    out)."""
    out = dict(state)
    for p, entries in spec.axes.items():
        if p == skip:
            continue
        for name, axis, block in entries:
            out[name] = out[name].index_select(axis, _index(perms[p], block).to(out[name].device))
    return out


def random_permutations(spec: PermutationSpec, generator: torch.Generator) -> dict[str, Tensor]:
    """One uniformly random permutation per entry of ``spec``."""
    return {p: torch.randperm(n, generator=generator) for p, n in spec.sizes.items()}


@dataclass(frozen=True)
class Alignment:
    """The outcome of weight matching.

    Attributes:
        perms: Permutation name -> indices; ``permute(spec, perms, state_b)`` is B aligned to A.
        num_sweeps: Coordinate-descent sweeps over the layers.
        converged: A sweep changed no permutation.
        objective: ``sum <W_a, P W_b>`` at the end, and at the identity.
        seed: Seed of the layer order.
    """

    perms: dict[str, Tensor]
    num_sweeps: int
    converged: bool
    objective: float
    identity_objective: float
    seed: int


def _similarity(spec, p, state_a, state_b_rest) -> np.ndarray:
    n = spec.sizes[p]
    total = np.zeros((n, n))
    for name, axis, block in spec.axes[p]:
        if name not in spec.matched:
            continue
        a = state_a[name].detach().to(torch.float64).movedim(axis, 0).reshape(n, -1)
        b = state_b_rest[name].detach().to(torch.float64).movedim(axis, 0).reshape(n, -1)
        total += (a @ b.T).cpu().numpy()
    return total


def _objective(spec, state_a, state_b) -> float:
    return float(
        sum(
            (state_a[n].detach().double() * state_b[n].detach().double()).sum()
            for n in spec.matched
        )
    )


def weight_matching(
    spec: PermutationSpec,
    state_a: dict[str, Tensor],
    state_b: dict[str, Tensor],
    seed: int = 0,
    max_sweeps: int = 100,
) -> Alignment:
    """Permutations of B's units that maximize ``<W_a, P W_b>`` (Ainsworth et al. 2023, Alg. 1).

    Args:
        spec: The architecture's :class:`PermutationSpec`.
        state_a: The reference network's state dict.
        state_b: The network to align.
        seed: Seed of the random layer order of each sweep.
        max_sweeps: Sweeps at most (``converged`` False when reached).
    """
    generator = torch.Generator().manual_seed(seed)
    perms = {p: torch.arange(n) for p, n in spec.sizes.items()}
    names = list(spec.sizes)
    converged, sweeps = False, 0
    while sweeps < max_sweeps:
        sweeps += 1
        changed = False
        for k in torch.randperm(len(names), generator=generator).tolist():
            p = names[k]
            similarity = _similarity(spec, p, state_a, permute(spec, perms, state_b, skip=p))
            _, columns = linear_sum_assignment(similarity, maximize=True)
            rows = np.arange(spec.sizes[p])
            old = similarity[rows, perms[p].numpy()].sum()
            new = similarity[rows, columns].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[p] = torch.as_tensor(columns, dtype=torch.long)
                changed = True
        if not changed:
            converged = True
            break
    aligned = permute(spec, perms, state_b)
    return Alignment(
        perms,
        sweeps,
        converged,
        _objective(spec, state_a, aligned),
        _objective(spec, state_a, state_b),
        seed,
    )

"""Directions in parameter space for loss-surface slices.

A direction is a ``dict[str, Tensor]`` keyed like ``named_parameters()`` (and, for interpolation
between checkpoints, floating ``named_buffers()``); a name it lacks does not move. Kinds:

- random Gaussian directions with filter normalization (Li et al., "Visualizing the Loss
  Landscape of Neural Nets", NeurIPS 2018, Sec. 4): every output filter (slice along dim 0) of
  the direction is rescaled to the norm of the matching weight filter, and 1-D tensors (biases,
  BatchNorm affine) are zeroed ("ignore biasbn") or, as in Li et al.'s code, set to the weight;
- the difference of two checkpoints (Goodfellow et al. 2015 interpolation; a plane through three);
- principal components of a training trajectory (Li et al. Sec. 7), with explained variance and the
  trajectory projected onto them;
- given eigenvectors (e.g. the top Hessian eigenvectors of :func:`landscape.top_eigenvalues`).

The kinds a surface can be drawn on are a registry, :data:`DIRECTION_KINDS`: each builder takes
the centre and its own inputs and returns a :class:`DirectionSet` (the directions, a JSON record
of how they were made, extra arrays); :func:`build_directions` dispatches by name. A new kind is
one builder decorated with :func:`direction_kind`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from landscape.lanczos import top_eigenvalues
from landscape.params import unflatten
from toolkit.io import save_npz, to_plain

__all__ = [
    "DIRECTION_KINDS",
    "NORMALIZATIONS",
    "Direction",
    "DirectionSet",
    "build_directions",
    "direction_kind",
    "random_direction",
    "normalize_direction",
    "filter_normalize",
    "layer_normalize",
    "direction_norm",
    "cosine_similarity",
    "orthogonalize",
    "difference",
    "PCAResult",
    "pca_directions",
    "project",
    "eigen_directions",
    "save_directions",
    "load_directions",
]

NORMALIZATIONS = ("filter", "layer", "none")
Direction = dict[str, Tensor]


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def filter_normalize(direction: Tensor, weight: Tensor) -> Tensor:
    """Rescale each filter ``direction[i]`` to the norm of ``weight[i]`` (Li et al. 2018, Eq. 1).

    Args:
        direction: ``[C_out, ...]`` direction for one weight tensor.
        weight: ``[C_out, ...]`` the weight, same shape.

    Returns:
        ``[C_out, ...]``: ``direction[i] * ||weight[i]|| / ||direction[i]||``; a zero filter of the
        direction stays zero.

    Example:
        >>> d = filter_normalize(torch.ones(2, 4), torch.tensor([[3.0, 4, 0, 0], [0, 0, 0, 2]]))
        >>> d.norm(dim=1).tolist(), d[1].tolist()
        ([5.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    """
    if direction.shape != weight.shape or direction.ndim < 1:
        raise ValueError(f"shapes differ or are 0-d: {direction.shape} vs {weight.shape}")
    dims = tuple(range(1, direction.ndim))
    if dims:
        d_norm = torch.linalg.vector_norm(direction, dim=dims, keepdim=True)
        w_norm = torch.linalg.vector_norm(weight, dim=dims, keepdim=True)
    else:  # a 1-D tensor: every entry is its own filter
        d_norm, w_norm = direction.abs(), weight.abs()
    scale = torch.where(d_norm > 0, w_norm / torch.where(d_norm > 0, d_norm, 1), 0)
    return direction * scale


def layer_normalize(direction: Tensor, weight: Tensor) -> Tensor:
    """Rescale a whole tensor ``direction`` to the norm of ``weight`` (Li et al.'s ``layer``)."""
    norm = direction.norm()
    return direction * (weight.norm() / norm) if norm > 0 else direction.clone()


def normalize_direction(
    direction: Mapping[str, Tensor],
    weights: Mapping[str, Tensor],
    normalization: str = "filter",
    ignore_biasbn: bool = True,
) -> Direction:
    """Normalize a direction tensor by tensor against the weights.

    Args:
        direction: name -> tensor, each shaped like ``weights[name]``.
        weights: name -> weight tensor at the centre point.
        normalization: ``filter`` (per slice along dim 0), ``layer`` (per tensor) or ``none``.
        ignore_biasbn: Zero tensors with ``ndim <= 1`` (biases, BatchNorm weights). If False they
            are set to the weight itself under ``filter``/``layer`` (Li et al.'s code) and left
            unchanged under ``none``.

    Returns:
        The normalized direction (new tensors).

    Raises:
        ValueError: On an unknown normalization or a name missing from ``weights``.
    """
    _check_normalization(normalization)
    missing = sorted(set(direction) - set(weights))
    if missing:
        raise ValueError(f"direction names without a weight: {missing[:5]}")
    result = {}
    for name, d in direction.items():
        w = weights[name].to(d.dtype)
        if d.ndim <= 1 and ignore_biasbn:
            result[name] = torch.zeros_like(d)
        elif normalization == "none":
            result[name] = d.clone()
        elif d.ndim <= 1:
            result[name] = w.clone()
        elif normalization == "filter":
            result[name] = filter_normalize(d, w)
        else:
            result[name] = layer_normalize(d, w)
    return result


def random_direction(
    weights: Mapping[str, Tensor],
    generator: torch.Generator,
    normalization: str = "filter",
    ignore_biasbn: bool = True,
) -> Direction:
    """A Gaussian random direction, normalized against ``weights``.

    Args:
        weights: name -> parameter tensor (e.g. ``dict(model.named_parameters())``); the direction
            covers exactly these names. Draws happen in this order, on the CPU, in the weights'
            dtype, so a seed gives the same direction on every device.
        generator: CPU ``torch.Generator``.
        normalization: See :func:`normalize_direction`.
        ignore_biasbn: See :func:`normalize_direction`.

    Returns:
        name -> tensor shaped like the weight, on the weight's device.

    Example:
        >>> w = {"w": torch.randn(4, 3), "b": torch.randn(4)}
        >>> d = random_direction(w, torch.Generator().manual_seed(0))
        >>> torch.allclose(d["w"].norm(dim=1), w["w"].norm(dim=1)), d["b"].abs().sum().item()
        (True, 0.0)
    """
    _check_normalization(normalization)
    raw = {
        name: torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        for name, w in weights.items()
    }
    return normalize_direction(raw, weights, normalization, ignore_biasbn)


def _flat(direction: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    parts = [direction[n].reshape(-1).double() for n in names if n in direction]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def direction_norm(direction: Mapping[str, Tensor]) -> float:
    """Euclidean norm of a direction over all its tensors."""
    return float(_flat(direction, list(direction)).norm())


def cosine_similarity(first: Mapping[str, Tensor], second: Mapping[str, Tensor]) -> float:
    """Cosine of the angle between two directions (names missing in one count as zero)."""
    names = sorted(set(first) & set(second))
    dot = float(_flat(first, names) @ _flat(second, names))
    norms = direction_norm(first) * direction_norm(second)
    return dot / norms if norms > 0 else float("nan")


def orthogonalize(direction: Mapping[str, Tensor], against: Mapping[str, Tensor]) -> Direction:
    """Gram-Schmidt: remove from ``direction`` its component along ``against``.

    The result keeps its own length scale but loses exact filter normalization, which is why
    Li et al. do not orthogonalize (random high-dimensional directions are nearly orthogonal).

    Raises:
        ValueError: If ``against`` is zero.
    """
    names = sorted(set(direction) & set(against))
    norm_sq = float(_flat(against, list(against)).pow(2).sum())
    if norm_sq == 0:
        raise ValueError("cannot orthogonalize against a zero direction")
    coefficient = float(_flat(direction, names) @ _flat(against, names)) / norm_sq
    return {
        name: d - coefficient * against[name] if name in against else d.clone()
        for name, d in direction.items()
    }


def difference(end: Mapping[str, Tensor], start: Mapping[str, Tensor]) -> Direction:
    """``end - start`` for every floating tensor of ``start`` (parameters and float buffers).

    With ``start`` as the centre, grid coordinate 0 is ``start`` and 1 is ``end``.

    Raises:
        ValueError: If names or shapes differ.
    """
    names = [n for n, t in start.items() if t.is_floating_point()]
    missing = sorted(set(names) - set(end))
    misshaped = [n for n in names if n in end and end[n].shape != start[n].shape]
    if missing or misshaped:
        raise ValueError(f"the two points differ: missing {missing[:5]}, shapes {misshaped[:5]}")
    return {n: end[n].to(start[n].dtype) - start[n] for n in names}


@dataclass
class PCAResult:
    """Principal directions of a trajectory ``w_e - w_centre``, e = 1..E.

    Attributes:
        directions: ``k`` unit directions (principal axes, in parameter units).
        explained_variance_ratio: ``[k]`` share of the variance of the centred trajectory.
        singular_values: ``[k]``.
        projection: ``[E, k]`` coordinates of each ``w_e - w_centre`` in the directions' basis.
    """

    directions: list[Direction]
    explained_variance_ratio: Tensor
    singular_values: Tensor
    projection: Tensor


def pca_directions(
    trajectory: Sequence[Mapping[str, Tensor]],
    centre: Mapping[str, Tensor],
    num_components: int = 2,
    ignore_biasbn: bool = False,
) -> PCAResult:
    """PCA of a training trajectory around its end point (Li et al. 2018, Sec. 7).

    The matrix ``M = [w_e - w_centre]`` ``[E, P]`` is centred over ``e`` (as sklearn's PCA, which
    Li et al. use) and decomposed by SVD; PCA directions are not filter-normalized.

    Args:
        trajectory: ``E >= num_components + 1`` points (e.g. the per-epoch checkpoints).
        centre: The point the surface is drawn around (usually the final weights); its names are
            the ones analysed.
        num_components: Number of directions ``k``.
        ignore_biasbn: Drop tensors with ``ndim <= 1`` from the analysis.

    Returns:
        :class:`PCAResult`.

    Raises:
        ValueError: If there are too few points.
    """
    if len(trajectory) < num_components + 1:
        raise ValueError(
            f"PCA with {num_components} components needs at least {num_components + 1} "
            f"trajectory points, got {len(trajectory)}"
        )
    names = [n for n, t in centre.items() if not (ignore_biasbn and t.ndim <= 1)]
    shapes = {n: centre[n].shape for n in names}
    origin = _flat(centre, names)
    matrix = torch.stack([_flat(point, names) - origin for point in trajectory])  # [E, P]
    centred = matrix - matrix.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = singular.pow(2)
    basis = vh[:num_components]  # [k, P]
    directions = [
        {n: t.to(centre[n].dtype) for n, t in unflatten(row, shapes).items()} for row in basis
    ]
    return PCAResult(
        directions=directions,
        explained_variance_ratio=variance[:num_components] / variance.sum(),
        singular_values=singular[:num_components],
        projection=matrix @ basis.T,
    )


def project(
    points: Sequence[Mapping[str, Tensor]],
    centre: Mapping[str, Tensor],
    directions: Sequence[Mapping[str, Tensor]],
) -> Tensor:
    """Least-squares coordinates of ``points - centre`` in the span of ``directions``.

    Returns:
        ``[E, k]`` float64 coordinates (exact when the directions are orthogonal or the points
        lie in their span).
    """
    names = sorted(set().union(*(set(d) for d in directions)) & set(centre))
    basis = torch.stack(
        [_flat({n: d.get(n, 0 * centre[n]) for n in names}, names) for d in directions]
    )
    origin = _flat(centre, names)
    offsets = torch.stack([_flat(p, names) - origin for p in points])  # [E, P]
    return torch.linalg.lstsq(basis.T, offsets.T).solution.T


def eigen_directions(
    eigenvectors: Tensor, shapes: Mapping[str, torch.Size], count: int | None = None
) -> list[Direction]:
    """Split flat eigenvectors ``[P, k]`` (columns) into named directions of unit norm.

    Args:
        eigenvectors: ``[P, k]``, e.g. ``EigenResult.eigenvectors`` of the Hessian.
        shapes: name -> shape in the flattening order of the vectors (``Objective.shapes``).
        count: Use the first ``count`` columns (default all).

    Returns:
        ``count`` directions, each normalized to unit Euclidean norm.

    Raises:
        ValueError: If the vectors do not fit the shapes.
    """
    if eigenvectors.ndim != 2:
        raise ValueError(f"eigenvectors must be [P, k], got {tuple(eigenvectors.shape)}")
    columns = eigenvectors.T[: count or eigenvectors.shape[1]]
    return [dict(unflatten(column / column.norm(), shapes)) for column in columns]


def save_directions(
    path: str | Path,
    directions: Sequence[Mapping[str, Tensor]],
    metadata: Mapping | None = None,
    extras: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write directions (and a JSON-able record and extra arrays) to one ``.npz``, atomically.

    Keys are ``"<i>/<name>"``; :func:`load_directions` reads them back bit for bit.

    Returns:
        The path written.
    """
    arrays: dict = {f"{i}/{name}": t for i, d in enumerate(directions) for name, t in d.items()}
    arrays.update({f"extra/{key}": value for key, value in (extras or {}).items()})
    arrays["_metadata"] = np.array(json.dumps(to_plain(dict(metadata or {}))))
    arrays["_count"] = np.array(len(directions))
    return save_npz(path, arrays)


def load_directions(path: str | Path) -> tuple[list[Direction], dict, dict[str, np.ndarray]]:
    """Read a file of :func:`save_directions`: ``(directions, metadata, extras)``."""
    with np.load(path, allow_pickle=False) as data:
        directions: list[Direction] = [{} for _ in range(int(data["_count"]))]
        for key in data.files:
            index, _, name = key.partition("/")
            if index.isdigit():
                directions[int(index)][name] = torch.from_numpy(data[key])
        extras = {key[6:]: data[key] for key in data.files if key.startswith("extra/")}
        return directions, json.loads(str(data["_metadata"])), extras


@dataclass
class DirectionSet:
    """The directions of a surface and how they were made.

    Attributes:
        directions: name -> tensor dicts, one per surface axis.
        info: JSON-ready record (normalization, cosines, explained variance, eigenvalues, norms).
        extras: Arrays saved with the surface (``trajectory`` of a PCA plane).
    """

    directions: list[Direction]
    info: dict
    extras: dict[str, np.ndarray] = field(default_factory=dict)


DIRECTION_KINDS: dict[str, Callable[..., DirectionSet]] = {}
"""kind -> builder ``(centre, **inputs) -> DirectionSet``."""


def direction_kind(name: str) -> Callable:
    """Register a builder of directions under ``name`` (a decorator)."""

    def decorator(builder: Callable[..., DirectionSet]) -> Callable[..., DirectionSet]:
        if name in DIRECTION_KINDS:
            raise ValueError(f"direction kind {name!r} is registered twice")
        DIRECTION_KINDS[name] = builder
        return builder

    return decorator


def build_directions(kind: str, centre: Mapping[str, Tensor], **inputs) -> DirectionSet:
    """The directions of ``kind`` around ``centre`` (name -> tensor), their norms recorded.

    Raises:
        ValueError: On an unknown kind, or inputs the kind cannot use.
    """
    if kind not in DIRECTION_KINDS:
        raise ValueError(f"unknown direction kind {kind!r}; known: {sorted(DIRECTION_KINDS)}")
    found = DIRECTION_KINDS[kind](centre, **inputs)
    found.info["norms"] = [direction_norm(d) for d in found.directions]
    return found


def _weights_only(centre: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: t.detach() for name, t in centre.items()}


def _float64(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Differences of float32 weights are exact in float64, so centre + 1 * d is the end point.
    return {n: t.detach().double() if t.is_floating_point() else t for n, t in state.items()}


@direction_kind("random")
def random_directions(
    centre: Mapping[str, Tensor],
    *,
    dim: int,
    generator: torch.Generator,
    normalization: str = "filter",
    ignore_biasbn: bool = True,
    orthogonalize_second: bool = False,
) -> DirectionSet:
    """``dim`` Gaussian directions over the parameters ``centre``, normalized; their cosine."""
    weights = _weights_only(centre)
    found = [random_direction(weights, generator, normalization, ignore_biasbn) for _ in range(dim)]
    info = {"normalization": normalization, "ignore_biasbn": ignore_biasbn}
    if dim == 2:
        info["cosine"] = cosine_similarity(*found)
        if orthogonalize_second:
            found[1] = orthogonalize(found[1], found[0])
            info["cosine_orthogonalized"] = cosine_similarity(*found)
    return DirectionSet(found, info)


@direction_kind("interp")
def interpolation_directions(
    centre: Mapping[str, Tensor], *, ends: Sequence[Mapping[str, Tensor]]
) -> DirectionSet:
    """``end - centre`` for each end point (parameters and floating buffers, in float64)."""
    start = _float64(centre)
    found = [difference(_float64(end), start) for end in ends]
    return DirectionSet(found, {"includes_buffers": True})


@direction_kind("pca")
def trajectory_directions(
    centre: Mapping[str, Tensor], *, trajectory: Sequence[Mapping[str, Tensor]], dim: int
) -> DirectionSet:
    """PCA of a trajectory around ``centre`` (its parameters); the projected trajectory."""
    weights = _weights_only(centre)
    points = [{name: point[name] for name in weights} for point in trajectory]
    result = pca_directions(points, weights, dim)
    info = {"explained_variance_ratio": result.explained_variance_ratio.tolist()}
    return DirectionSet(result.directions, info, {"trajectory": result.projection.numpy()})


@direction_kind("eigen")
def hessian_directions(
    centre: Mapping[str, Tensor], *, operator, shapes: Mapping, dim: int, generator
) -> DirectionSet:
    """The top ``dim`` eigenvectors of a symmetric operator (e.g. the Hessian at ``centre``),
    of unit norm, with the Lanczos record."""
    result = top_eigenvalues(operator, dim, generator=generator)
    found = eigen_directions(result.eigenvectors.cpu(), shapes)
    return DirectionSet(found, {"curvature": operator.curvature, **result.to_dict()})

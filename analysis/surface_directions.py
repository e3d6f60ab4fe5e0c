"""Directions of a loss surface: random, interpolation, PCA of a trajectory, Hessian eigenvectors.

Each builder takes the centre model and a :class:`analysis.surfaces.SurfaceJob` and returns the
directions (parameter-name -> tensor dicts), a JSON-ready record of how they were made, and, for
PCA, the projected trajectory.
"""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.common import resolve_device
from analysis.inputs import DataSpec, file_sha256, load_objective, resolve_dtype
from analysis.surfaces import SurfaceJob
from landscape import HessianOperator, top_eigenvalues
from landscape import directions as dirs
from training import checkpoint as checkpoints

__all__ = [
    "build_directions",
    "eigen_directions",
    "interp_directions",
    "pca_directions",
    "random_directions",
]


def _state(model: torch.nn.Module, parameters_only: bool = False) -> dict[str, torch.Tensor]:
    named = model.named_parameters() if parameters_only else model.state_dict().items()
    return {name: tensor.detach() for name, tensor in named}


def _float64(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Differences of float32 weights are exact in float64, so centre + 1 * d is the end point.
    return {name: t.double() if t.is_floating_point() else t for name, t in state.items()}


def random_directions(model: torch.nn.Module, job: SurfaceJob) -> tuple[list, dict]:
    """``dim`` seeded Gaussian directions, normalized; their cosine."""
    generator = torch.Generator().manual_seed(job.seed)
    weights = _state(model, parameters_only=True)
    found = [
        dirs.random_direction(weights, generator, job.normalization, job.ignore_biasbn)
        for _ in range(job.dim)
    ]
    info = {"normalization": job.normalization, "ignore_biasbn": job.ignore_biasbn}
    if job.dim == 2:
        info["cosine"] = dirs.cosine_similarity(*found)
        if job.orthogonalize:
            found[1] = dirs.orthogonalize(found[1], found[0])
            info["cosine_orthogonalized"] = dirs.cosine_similarity(*found)
    return found, info


def interp_directions(model: torch.nn.Module, job: SurfaceJob) -> tuple[list, dict]:
    """``CKPT_i - CKPT`` for the checkpoints of ``interp:`` (parameters and BN statistics)."""
    others = [Path(path) for path in job.spec.split(",")]
    start = _float64(_state(model))
    found = [dirs.difference(_float64(_state(checkpoints.load(p)[0])), start) for p in others]
    info = {"checkpoints": [str(p) for p in others], "includes_buffers": True}
    return found, {**info, "sha256": [file_sha256(p) for p in others]}


def pca_directions(model: torch.nn.Module, job: SurfaceJob) -> tuple[list, dict, dict]:
    """PCA of ``RUN_DIR/epoch_*.pt`` around the checkpoint, and the projected trajectory."""
    files = sorted(Path(job.spec).glob("epoch_*.pt"))
    if len(files) < job.dim + 1:
        raise ValueError(
            f"pca needs >= {job.dim + 1} epoch_NNN.pt files in {job.spec}, found "
            f"{len(files)} (train with --save-every 1)"
        )
    weights = _state(model, parameters_only=True)
    states = [checkpoints.load_raw(path)["model"]["state_dict"] for path in files]
    result = dirs.pca_directions([{n: s[n] for n in weights} for s in states], weights, job.dim)
    info = {"run_dir": job.spec, "epochs": [path.name for path in files]}
    info["explained_variance_ratio"] = result.explained_variance_ratio.tolist()
    return result.directions, info, {"trajectory": result.projection.numpy()}


def eigen_directions(job: SurfaceJob) -> tuple[list, dict]:
    """Top ``dim`` eigenvectors of the autograd surrogate Hessian of ``--loss``."""
    loaded = load_objective(
        job.checkpoint,
        DataSpec(job.split, job.samples, job.seed, job.batch_size),
        loss=job.loss,
        device=resolve_device(job.device),
        dtype=resolve_dtype(job.dtype),
    )
    generator = torch.Generator().manual_seed(job.seed)
    result = top_eigenvalues(HessianOperator(loaded.objective), job.dim, generator=generator)
    found = dirs.eigen_directions(result.eigenvectors.cpu(), loaded.objective.shapes)
    record = {"loss": loaded.loss_name, "curvature": HessianOperator.curvature}
    return found, {**record, **result.to_dict()}


def build_directions(model: torch.nn.Module, job: SurfaceJob) -> tuple[list, dict, dict]:
    """Directions of ``job.directions``, their record and extra arrays (the PCA trajectory)."""
    if job.kind == "pca":
        found, info, extras = pca_directions(model, job)
    elif job.kind == "eigen":
        (found, info), extras = eigen_directions(job), {}
    else:
        build = random_directions if job.kind == "random" else interp_directions
        (found, info), extras = build(model, job), {}
    return found, {**info, "norms": [dirs.direction_norm(d) for d in found]}, extras

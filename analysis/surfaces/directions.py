"""The directions of a surface: what each kind of the engine's registry needs from a run.

The engine (``landscape.directions.DIRECTION_KINDS``, reached through ``landscape.api``) builds
random, interpolation, PCA and Hessian-eigenvector directions from tensors; this module supplies
them from checkpoints (the further checkpoints of ``interp:``, the ``epoch_NNN.pt`` trajectory of
``pca:``, the objective of ``eigen``) and records where they came from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.measures.inputs import EvalInput, resolve_dtype
from analysis.surfaces.plan import SurfacePlan
from landscape import api
from landscape.directions import DirectionSet
from toolkit.errors import ConfigError
from toolkit.io import resolve_device
from training.runs import checkpoint as checkpoints
from training.runs.layout import RunFiles

__all__ = ["build_directions"]


def _interp(input: EvalInput, plan: SurfacePlan) -> tuple[dict, dict]:
    others = plan.ends
    ends = [other.model().state_dict() for other in others]
    record = {"checkpoints": [str(o.path) for o in others], "sha256": [o.sha256 for o in others]}
    return {"ends": ends}, record


def _pca(input: EvalInput, plan: SurfacePlan) -> tuple[dict, dict]:
    run = RunFiles(Path(plan.settings.spec))
    files = [path for _, path in sorted(run.snapshots().items())]
    dim = plan.settings.dim
    if len(files) < dim + 1:
        raise ConfigError(
            f"pca needs >= {dim + 1} epoch_NNN.pt files in {run.path}, found {len(files)} "
            "(train with --save-every 1)"
        )
    trajectory = [checkpoints.load_raw(path)["model"]["state_dict"] for path in files]
    record = {"run_dir": str(run.path), "epochs": [path.name for path in files]}
    return {"trajectory": trajectory, "dim": dim}, record


def _eigen(input: EvalInput, plan: SurfacePlan) -> tuple[dict, dict]:
    data = plan.data
    loss = input.loss(
        data.loss, dtype=resolve_dtype(data.dtype), device=resolve_device(data.device)
    )
    operator = loss.hessian
    inputs = {
        "operator": operator,
        "shapes": loss.objective.shapes,
        "dim": plan.settings.dim,
        "generator": torch.Generator().manual_seed(data.seed),
    }
    return inputs, {"loss": loss.name}


def _random(input: EvalInput, plan: SurfacePlan) -> tuple[dict, dict]:
    s = plan.settings
    inputs = {
        "dim": s.dim,
        "generator": torch.Generator().manual_seed(plan.data.seed),
        "normalization": s.normalization,
        "ignore_biasbn": s.ignore_biasbn,
        "orthogonalize_second": s.orthogonalize,
    }
    return inputs, {}


_INPUTS = {"random": _random, "interp": _interp, "pca": _pca, "eigen": _eigen}


def build_directions(input: EvalInput, plan: SurfacePlan) -> DirectionSet:
    """The directions of ``plan`` around its checkpoint, with where they came from in ``info``."""
    inputs, record = _INPUTS[plan.settings.kind](input, plan)
    found = api.directions(plan.settings.kind, input.model, **inputs)
    found.info = {**record, **found.info}
    return found

"""Tiny checkpoints and objectives for the analysis tests (a few hundred parameters each)."""

from __future__ import annotations

from pathlib import Path

import torch

from analysis.measures.inputs import DataSpec, load_input
from training.models import build
from training.runs import checkpoint


def save_mlp(
    path: Path,
    method: str = "sdt",
    seed: int = 0,
    T: int = 2,
    hidden: tuple[int, ...] = (4,),
    lamb: float = 0.05,
    scale: float = 1.0,
) -> Path:
    """A spiking MLP on the digits (seeded weights, times ``scale``) saved as a checkpoint."""
    kwargs = dict(num_classes=10, image_size=8, hidden=hidden, T=T)
    torch.manual_seed(seed)
    model = build("spiking_mlp", **kwargs)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    config = {
        "model": "spiking_mlp",
        "dataset": "digits",
        "T": T,
        "method": method,
        "tet_lambda": lamb,
        "tet_phi": 1.0,
        "seed": seed,
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    checkpoint.save(path, model, "spiking_mlp", kwargs, config, epoch=0, step=0)
    return path


def objective(path: Path, loss: str = "checkpoint", time_step=None, samples: int = 40):
    """The float64 objective of a checkpoint's loss on a seeded subset of the training split."""
    input = load_input(checkpoint.read(path), DataSpec(samples=samples))
    return input.loss(loss, time_step, dtype=torch.float64).objective


def dense_hessian(found) -> torch.Tensor:
    """The Hessian of an objective, column by column (tiny models only)."""
    return torch.stack([found.hvp(e) for e in torch.eye(found.num_params).double()])


def exit_code(main, argv: list[str]) -> int:
    """``main(argv)``'s exit status, argparse's usage errors (``SystemExit``) included."""
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code

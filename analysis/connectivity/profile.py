"""Losses, accuracy and firing rates along a path, BatchNorm statistics, and the barrier.

At every evaluated point of a path the network is evaluated two ways (Garipov et al. 2018 do the
second): with the BatchNorm running statistics interpolated along the path like the weights
(``bn = "interpolated"``), and with them recomputed for the weights at that point on a fixed
subset of the training data (``bn = "recomputed"``); without the recomputation a barrier can be
an artifact of statistics that fit neither end. Each of the two is evaluated with hard spikes
(``spikes = "hard"``, as trained) and with the surrogate's smooth step in the forward pass
(``spikes = "smooth"``, :mod:`training.snn.smooth`).

The barrier of a profile is Frankle et al.'s (2020, "Linear mode connectivity and the lottery
ticket hypothesis"): ``max_t [L(t) - ((1 - t) L(0) + t L(1))]``, the largest excess over the
straight line between the end values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from analysis.connectivity.curves import path_point
from training.data.datasets import TensorLoader
from training.runs.epoch import evaluate
from training.snn.smooth import smooth_model

__all__ = [
    "BN_MODES",
    "METRICS",
    "PROFILE_COLUMNS",
    "Barrier",
    "batch_norm_statistics",
    "barrier",
    "split_state",
    "PathEvaluator",
]

BN_MODES = ("interpolated", "recomputed")
METRICS = ("l_sdt", "l_tet", "error")
PROFILE_COLUMNS = (
    "aligned",
    "path",
    "t",
    "bn",
    "spikes",
    "acc",
    "error",
    "l_sdt",
    "l_tet",
    "firing_rate",
)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def split_state(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(parameters, buffers)`` of a model, detached copies, by ``state_dict`` name."""
    parameters = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    return parameters, buffers


def batch_norm_statistics(
    model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]
) -> dict[str, Tensor]:
    """Running statistics of every BatchNorm recomputed for the model's weights on ``batches``.

    The model (a copy; the one given is not changed) runs in train mode, as in Garipov et al.'s
    ``update_bn``; each BatchNorm's inputs over all batches are accumulated in float64, and its
    ``running_mean`` becomes their mean and ``running_var`` their unbiased variance, exactly
    (not a momentum average of batch statistics). Static inputs are materialized over time on
    the copy, so every BatchNorm sees the tensor it normalizes.

    Returns:
        ``{"<bn>.running_mean": ..., "<bn>.running_var": ...}`` in each buffer's dtype.
    """
    work = copy.deepcopy(model).train()
    sums: dict[str, list] = {}
    handles = []
    for name, module in work.named_modules():
        if hasattr(module, "use_static_stem"):
            module.use_static_stem = False
        if isinstance(module, _NORMS) and module.track_running_stats:

            def hook(module, inputs, name=name):
                x = inputs[0].detach().to(torch.float64)
                dims = [0, *range(2, x.ndim)]
                entry = sums.setdefault(name, [0.0, 0.0, 0])
                entry[0] = entry[0] + x.sum(dims)
                entry[1] = entry[1] + (x * x).sum(dims)
                entry[2] += x.numel() // x.shape[1]

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for x, _ in batches:
                work(x)
    finally:
        for handle in handles:
            handle.remove()
    found = {}
    for name, (total, squares, n) in sums.items():
        module = work.get_submodule(name)
        mean = total / n
        var = (squares - n * mean * mean) / (n - 1)
        found[f"{name}.running_mean"] = mean.to(module.running_mean.dtype)
        found[f"{name}.running_var"] = var.clamp(min=0).to(module.running_var.dtype)
    return found


@dataclass(frozen=True)
class Barrier:
    """The barrier of one profile.

    Attributes:
        height: ``max_t [v(t) - ((1 - t) v(0) + t v(1))]`` (0 when the profile is convex-below).
        t: Where the maximum is.
        start: ``v(0)``.
        end: ``v(1)``.
        peak: ``v(t)`` at the maximum.
    """

    height: float
    t: float
    start: float
    end: float
    peak: float


def barrier(ts: Sequence[float], values: Sequence[float]) -> Barrier:
    """Frankle et al.'s barrier of a profile sampled at ``ts`` (which must hold 0 and 1).

    Raises:
        ValueError: If ``ts`` does not start at 0 and end at 1, or the lengths differ.
    """
    t, v = np.asarray(ts, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.size < 2 or t[0] != 0.0 or t[-1] != 1.0:
        raise ValueError("a barrier needs values at sorted t from 0 to 1, as many as the t")
    excess = v - ((1 - t) * v[0] + t * v[-1])
    if not np.all(np.isfinite(excess)):
        return Barrier(math.nan, math.nan, float(v[0]), float(v[-1]), math.nan)
    k = int(np.argmax(excess))
    return Barrier(float(excess[k]), float(t[k]), float(v[0]), float(v[-1]), float(v[k]))


class PathEvaluator:
    """Evaluates points of paths between two checkpoints of one architecture.

    Holds two working copies of the architecture (hard and smooth spikes); the model given is
    not changed.

    Args:
        model: The architecture (any weights).
        loader: The fixed evaluation samples.
        bn_batches: The fixed training samples the BatchNorm statistics are recomputed on.
        lamb: TET's lambda for ``l_tet``.
        phi: TET's phi.
    """

    def __init__(
        self,
        model: nn.Module,
        loader: TensorLoader,
        bn_batches: Sequence[tuple[Tensor, Tensor]],
        lamb: float,
        phi: float,
    ) -> None:
        self.models = {"hard": copy.deepcopy(model).eval(), "smooth": smooth_model(model).eval()}
        self.loader, self.bn_batches, self.lamb, self.phi = loader, bn_batches, lamb, phi

    def point(self, parameters: dict, buffers: dict) -> Iterator[dict]:
        """One row per BatchNorm mode and spike kind at these weights."""
        for spikes, model in self.models.items():
            model.load_state_dict({**parameters, **buffers})
            for bn in BN_MODES:
                if bn == "recomputed":
                    model.load_state_dict(
                        batch_norm_statistics(model, self.bn_batches), strict=False
                    )
                with torch.no_grad():
                    found = evaluate(model, self.loader, self.lamb, self.phi)
                yield {
                    "bn": bn,
                    "spikes": spikes,
                    "acc": found["acc"],
                    "error": 1.0 - found["acc"],
                    "l_sdt": found["l_sdt"],
                    "l_tet": found["l_tet"],
                    "firing_rate": found["firing_rate"],
                }

    def profile(
        self,
        kind: str,
        ts: Sequence[float],
        ends: tuple[tuple[dict, dict], tuple[dict, dict]],
        middle: tuple[dict, dict] | None = None,
    ) -> Iterator[dict]:
        """Rows along a path: for each ``t``, the rows of :meth:`point` with ``t`` added.

        Args:
            kind: ``line``, ``bezier`` or ``polychain``.
            ts: Positions in ``[0, 1]``.
            ends: ``((parameters, buffers) at t = 0, (parameters, buffers) at t = 1)``.
            middle: The bend's ``(parameters, buffers)`` for curves (its buffers: the ends'
                mean, the curve's interpolated statistics).
        """
        (params_a, buffers_a), (params_b, buffers_b) = ends
        floating = {k for k, v in buffers_a.items() if v.is_floating_point()}
        for t in ts:
            t = float(t)
            bend = middle or (None, None)
            parameters = path_point(kind, t, params_a, bend[0], params_b)
            moving = {k: buffers_a[k] for k in floating}
            buffers = dict(buffers_a)
            mid_buffers = None if bend[1] is None else {k: bend[1][k] for k in floating}
            buffers.update(
                path_point(kind, t, moving, mid_buffers, {k: buffers_b[k] for k in floating})
            )
            for row in self.point(parameters, buffers):
                yield {"t": t, **row}

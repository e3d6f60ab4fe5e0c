"""Gradient-momentum statistics: the paper's gradient re-weighting argument, measured.

Deng et al. (2022), Eqs. 8 and 10. With outputs ``O(t)`` (``[T, B, C]``) and one-hot labels y,

    dL_SDT/dW = (1/T) sum_t [S(mean_s O(s)) - y] dO(t)/dW      (one error term shared by all t)
    dL_TET/dW = (1/T) sum_t [S(O(t)) - y] dO(t)/dW             (each t has its own error term)

(plus lambda's MSE term for TET). Near an SDT minimum the shared term vanishes whatever
``dO(t)/dW`` is; TET's per-step terms cannot all vanish unless ``dO(t)/dW -> 0``. This module
measures, at fixed weights and on a fixed evaluation set (BN in eval mode, model untouched):

- ``error_norm[t]``: mean over samples of ``||e_t||_2`` (SDT: the shared term, TET: its own);
- ``g_norm[t]`` and ``g_cos[t, s]``: the part ``g_t`` of the gradient that flows through O(t)
  (a vector-Jacobian product with ``dL/dO`` masked to step t; ``sum_t g_t`` is the gradient);
- ``grad_norm`` and ``layer_grad_norm``: ``||dL/dW||`` overall and per layer;
- ``output_variance``: variance of O(t) over t, averaged over samples and classes;
  ``step_acc[t]``: accuracy of ``argmax O(t)`` alone.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from training.snn.losses import sdt_loss, tet_loss

__all__ = [
    "error_terms",
    "gradient_statistics",
    "momentum_subset",
    "optimizer_state_norm",
    "flat_parameters",
    "update_cosine",
    "statistics_rows",
]


def error_terms(outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """The error terms of Eqs. 8 and 10: ``sdt [B, C]`` and ``tet [T, B, C]``."""
    onehot = F.one_hot(labels, outputs.shape[-1]).to(outputs.dtype)
    return {
        "sdt": outputs.mean(0).softmax(-1) - onehot,
        "tet": outputs.softmax(-1) - onehot,
    }


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes.items():
            module.train(mode)


def _layer(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def _step_gradients(outputs: Tensor, cotangent: Tensor, params: list[Tensor]) -> list[Tensor]:
    """``g_t`` for every t: VJPs of ``outputs`` with ``cotangent`` masked to one time step.

    Returns:
        T flattened gradients ``[P]``.
    """
    T, grads = outputs.shape[0], []
    for t in range(T):
        masked = torch.zeros_like(cotangent)
        masked[t] = cotangent[t]
        parts = torch.autograd.grad(outputs, params, masked, retain_graph=True, allow_unused=True)
        grads.append(torch.cat([_flat(g, p) for g, p in zip(parts, params)]))
    return grads


def _flat(grad: Tensor | None, param: Tensor) -> Tensor:
    return (torch.zeros_like(param) if grad is None else grad).flatten()


def _batch_statistics(model, params, x, y, lamb, phi) -> dict:
    """Per-batch sums (error norms, accuracies) and batch-mean gradients of both losses."""
    outputs = functional_call(model, params, (x,))  # [T, B, C]
    terms, names = error_terms(outputs.detach(), y), list(params)
    result = {
        "sdt_error": terms["sdt"].norm(dim=-1).sum().repeat(outputs.shape[0]),
        "tet_error": terms["tet"].norm(dim=-1).sum(1),
        "step_correct": (outputs.detach().argmax(-1) == y).sum(1).to(outputs.dtype),
        "variance": outputs.detach().var(0, unbiased=False).mean(-1).sum(),
    }
    losses = {"sdt": sdt_loss(outputs, y), "tet": tet_loss(outputs, y, lamb, phi)}
    for name, loss in losses.items():
        (cotangent,) = torch.autograd.grad(loss, outputs, retain_graph=True)
        result[f"{name}_g"] = _step_gradients(outputs, cotangent, [params[n] for n in names])
    return result


def gradient_statistics(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], lamb: float, phi: float
) -> dict:
    """Statistics of both losses at the model's weights, sample-weighted over all batches.

    Args:
        model: Returns ``[T, B, C]``; evaluated in eval mode, never modified.
        batches: Fixed ``(x, y)`` batches (the same set for every call to compare epochs).
        lamb: TET's lambda. phi: TET's phi.

    Returns:
        ``{"T", "num_samples", "output_variance", "step_acc" [T], "sdt"/"tet": {"error_norm" [T],
        "g_norm" [T], "g_cos" [T, T], "grad_norm", "layer_grad_norm" {layer: norm}}}``.
    """
    params = {k: p.detach().requires_grad_() for k, p in model.named_parameters()}
    sums: dict = defaultdict(float)
    with _eval_mode(model):
        for x, y in batches:
            batch = _batch_statistics(model, params, x, y, lamb, phi)
            for key, value in batch.items():
                scale = len(y) if key.endswith("_g") else 1  # gradients are batch means
                sums[key] = _add(sums[key], value, scale)
            sums["n"] += len(y)
    return _finish(sums, list(params), [p.numel() for p in params.values()])


def _add(total, value, scale):
    if isinstance(value, list):
        scaled = [v * scale for v in value]
        return scaled if isinstance(total, float) else [a + b for a, b in zip(total, scaled)]
    return total + value * scale


def _finish(sums: dict, names: list[str], sizes: list[int]) -> dict:
    n = sums["n"]
    stats = {
        "T": len(sums["step_correct"]),
        "num_samples": int(n),
        "output_variance": float(sums["variance"] / n),
        "step_acc": (sums["step_correct"] / n).tolist(),
    }
    for loss in ("sdt", "tet"):
        g = torch.stack([v / n for v in sums[f"{loss}_g"]])  # [T, P]
        norms = g.norm(dim=1)
        total = g.sum(0)
        layers: dict[str, float] = defaultdict(float)
        for name, part in zip(names, total.split(sizes)):
            layers[_layer(name)] += float(part.pow(2).sum())
        stats[loss] = {
            "error_norm": (sums[f"{loss}_error"] / n).tolist(),
            "g_norm": norms.tolist(),
            "g_cos": ((g @ g.T) / (norms[:, None] * norms[None, :]).clamp_min(1e-30)).tolist(),
            "grad_norm": float(total.norm()),
            "layer_grad_norm": {k: v**0.5 for k, v in layers.items()},
            "gradient": total,
        }
    return stats


def momentum_subset(x: Tensor, y: Tensor, num_samples: int) -> tuple[Tensor, Tensor]:
    """The fixed evaluation subset: ``num_samples`` samples drawn with seed 0, in drawn order."""
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(y), generator=generator)[:num_samples].to(y.device)
    return x[index], y[index]


def optimizer_state_norm(optimizer: torch.optim.Optimizer) -> float:
    """Norm of SGD's momentum buffers or Adam's first moments (NaN when there is none yet)."""
    squares = [
        state[key].float().pow(2).sum()
        for state in optimizer.state.values()
        for key in ("momentum_buffer", "exp_avg")
        if isinstance(state.get(key), Tensor)
    ]
    return float(torch.stack(squares).sum().sqrt()) if squares else float("nan")


def flat_parameters(model: nn.Module) -> Tensor:
    """All parameters as one detached float64 vector."""
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def update_cosine(before: Tensor, middle: Tensor, after: Tensor) -> float:
    """Cosine between the successive updates ``middle - before`` and ``after - middle``."""
    first, second = middle - before, after - middle
    denominator = first.norm() * second.norm()
    return float(first @ second / denominator) if denominator > 0 else float("nan")


def statistics_rows(stats: dict, epoch: int | None = None) -> list[dict]:
    """Long-format rows ``epoch, loss, quantity, t, s, layer, value`` (pandas-ready)."""
    rows = []

    def add(loss, quantity, value, t="", s="", layer=""):
        rows.append(
            {
                "epoch": epoch,
                "loss": loss,
                "quantity": quantity,
                "t": t,
                "s": s,
                "layer": layer,
                "value": float(value),
            }
        )

    add("", "output_variance", stats["output_variance"])
    for t, value in enumerate(stats["step_acc"]):
        add("", "step_acc", value, t)
    for loss in ("sdt", "tet"):
        part = stats[loss]
        add(loss, "grad_norm", part["grad_norm"])
        for t in range(stats["T"]):
            add(loss, "error_norm", part["error_norm"][t], t)
            add(loss, "g_norm", part["g_norm"][t], t)
            for s in range(stats["T"]):
                add(loss, "g_cos", part["g_cos"][t][s], t, s)
        for layer, value in part["layer_grad_norm"].items():
            add(loss, "layer_grad_norm", value, layer=layer)
    return rows

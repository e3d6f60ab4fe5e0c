"""SDT and TET losses on time-major outputs ``O`` of shape ``[T, B, C]``.

Deng et al. (2022): SDT is Eq. 7, TET Eqs. 9, 12, 13. Both reduce to plain cross-entropy when
T = 1 and lambda = 0. Lemma 4.1, ``L_SDT <= L_TET(lambda = 0)``, follows from Jensen's inequality
on the concave log-softmax.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

__all__ = ["sdt_loss", "tet_loss", "per_step_ce", "loss_terms", "predictions", "LOSSES", "get_loss"]


def _check(outputs: Tensor, labels: Tensor) -> None:
    if outputs.ndim != 3:
        raise ValueError(f"outputs must be time-major [T, B, C], got shape {tuple(outputs.shape)}")
    if labels.shape != outputs.shape[1:2]:
        raise ValueError(
            f"labels must have shape [B] = [{outputs.shape[1]}], got {tuple(labels.shape)}"
        )


def sdt_loss(outputs: Tensor, labels: Tensor) -> Tensor:
    """Standard direct training loss ``CE(mean_t O(t), y)`` (Eq. 7), batch-mean.

    Args:
        outputs: ``[T, B, C]`` logits per time step.
        labels: ``[B]`` class indices.

    Returns:
        Scalar loss.
    """
    _check(outputs, labels)
    return F.cross_entropy(outputs.mean(0), labels)


def per_step_ce(outputs: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of every time step, ``[T]``: ``L_t = CE(O(t), y)`` averaged over the batch."""
    _check(outputs, labels)
    T, B, C = outputs.shape
    losses = F.cross_entropy(outputs.reshape(T * B, C), labels.repeat(T), reduction="none")
    return losses.view(T, B).mean(1)


def tet_loss(outputs: Tensor, labels: Tensor, lamb: float = 0.05, phi: float = 1.0) -> Tensor:
    """TET loss ``(1 - lamb) mean_t CE(O(t), y) + lamb mean((O - phi)^2)`` (Eqs. 9, 12, 13).

    The MSE term averages over all ``T*B*C`` entries, as the official ``TET_loss`` does.

    Args:
        outputs: ``[T, B, C]`` logits per time step.
        labels: ``[B]`` class indices.
        lamb: Weight of the MSE regularizer (paper: 0.05 for CIFAR, 1e-3 for ImageNet and DVS).
        phi: Target of the MSE regularizer (paper: V_th = 1).

    Returns:
        Scalar loss.
    """
    if not 0.0 <= lamb <= 1.0:
        raise ValueError(f"TET lambda must be in [0, 1], got {lamb}")
    loss = per_step_ce(outputs, labels).mean()
    if lamb:
        loss = (1 - lamb) * loss + lamb * (outputs - phi).pow(2).mean()
    return loss


def predictions(outputs: Tensor) -> Tensor:
    """Class prediction ``argmax_c mean_t O(t)``, shape ``[B]``."""
    return outputs.mean(0).argmax(-1)


def loss_terms(outputs: Tensor, labels: Tensor, lamb: float, phi: float) -> dict[str, Tensor]:
    """Both losses and the number of correct predictions, for logging whichever one is optimized.

    ``l_steps`` is ``mean_t CE(O(t), y)``: TET without its MSE term (Lemma 4.1's ``L_TET``).
    """
    return {
        "l_sdt": sdt_loss(outputs, labels),
        "l_tet": tet_loss(outputs, labels, lamb, phi),
        "l_steps": per_step_ce(outputs, labels).mean(),
        "correct": (predictions(outputs) == labels).sum(),
    }


LOSSES: dict[str, Callable[..., Tensor]] = {"sdt": sdt_loss, "tet": tet_loss}
"""method name -> loss; TET takes the extra keyword arguments ``lamb`` and ``phi``."""


def get_loss(
    method: str, lamb: float = 0.05, phi: float = 1.0
) -> Callable[[Tensor, Tensor], Tensor]:
    """The training loss of a method as ``loss(outputs [T, B, C], labels [B]) -> scalar``.

    Raises:
        ValueError: On an unknown method name.
    """
    if method == "sdt":
        return sdt_loss
    if method == "tet":
        return lambda outputs, labels: tet_loss(outputs, labels, lamb, phi)
    raise ValueError(f"unknown method {method!r}; expected one of {sorted(LOSSES)}")

"""One pass over the data: ``train_one_epoch`` (optimizer steps) and ``evaluate`` (eval mode).

Both return sample-weighted means reduced over all ranks; with several processes each rank
computes on its own shard (see ``training.runs.distributed``).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from tqdm import tqdm

from toolkit.errors import DivergenceError
from training.data.datasets import TensorLoader
from training.runs.distributed import Distributed
from training.runs.run_state import RunState
from training.snn.losses import loss_terms
from training.snn.spikes import spike_counter

__all__ = ["train_one_epoch", "evaluate"]


def _shard(x: Tensor, dist: Distributed, batch_dim: int) -> Tensor:
    part = dist.shard(x.shape[batch_dim])
    return x[part] if batch_dim == 0 else x[:, part]


def _training_batches(run: RunState, epoch: int) -> Iterator[tuple[Tensor, Tensor, int]]:
    """This rank's augmented part of each global batch of ``epoch``, with the global size."""
    loader, dist, augment = run.data.train, run.dist, run.data.augment
    generator = loader.generator(epoch)
    steps = min(len(loader), run.config.steps_per_epoch or len(loader))
    hidden = None if run.progress and dist.is_main else True
    batches = loader.batches(epoch, generator)
    batches = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}", leave=False, disable=hidden)
    for step, (x, y) in enumerate(batches):
        if step == steps:
            break
        x = augment(x, generator) if augment is not None else x
        total = len(y) * (dist.world if loader.is_sharded else 1)
        if not loader.is_sharded:  # sequences are time-major [T, B, ...]
            x, y = _shard(x, dist, x.ndim - 4), _shard(y, dist, 0)
        yield x, y, total


def train_one_epoch(
    run: RunState, epoch: int, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> dict[str, float]:
    """One pass over the training data; running means of the loss, accuracy, L_SDT, L_TET.

    Each rank trains ``run.forward_model`` on its shard of the global batch; its mean loss is
    rescaled so that the averaged gradient is the gradient of the global batch mean.

    Raises:
        DivergenceError: When the loss is NaN or infinite (names the step).
    """
    model, optimizer, dist = run.forward_model, run.optimizer, run.dist
    lamb, phi, device = run.config.tet_lambda, run.config.tet_phi, run.data.train.device
    model.train()
    sums = [0.0] * 5
    for step, (x, y, total) in enumerate(_training_batches(run, epoch)):
        with torch.autocast(device.type, torch.bfloat16, enabled=run.config.amp):
            outputs = model(x)  # [T, B_local, C]
            loss = loss_fn(outputs.float(), y)
        if not torch.isfinite(loss):
            where = f"epoch {epoch + 1}, step {step + 1}"
            raise DivergenceError(f"loss became {loss.item()} at {where}")
        optimizer.zero_grad(set_to_none=True)
        (loss * (len(y) * dist.world / total)).backward()
        optimizer.step()
        terms = loss_terms(outputs.detach().float(), y, lamb, phi)
        batch = [loss.item(), terms["l_sdt"].item(), terms["l_tet"].item()]
        batch = [v * len(y) for v in batch] + [terms["correct"], len(y)]
        sums = [s + v for s, v in zip(sums, batch)]
    loss, l_sdt, l_tet, correct, seen = dist.sum([float(s) for s in sums], device)
    names = ("train_loss", "train_l_sdt", "train_l_tet", "train_acc")
    return dict(zip(names, (loss / seen, l_sdt / seen, l_tet / seen, correct / seen)))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: TensorLoader,
    lamb: float,
    phi: float,
    dist: Distributed = Distributed(),
    amp: bool = False,
) -> dict[str, float]:
    """Accuracy, L_SDT, L_TET (sample-weighted) and mean firing rate, in eval mode.

    With several processes each rank evaluates its own disjoint shard and the sums are reduced.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    keys = ("l_sdt", "l_tet", "l_steps")
    sums = [0.0] * 5
    with spike_counter(model) as counts:
        for x, y in loader.batches():
            with torch.autocast(loader.device.type, torch.bfloat16, enabled=amp):
                outputs = model(x).float()
            terms = loss_terms(outputs, y, lamb, phi)
            batch = [terms["correct"].item(), *(terms[k].item() * len(y) for k in keys), len(y)]
            sums = [s + v for s, v in zip(sums, batch)]
    model.train(was_training)
    spikes = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    *totals, seen, spiked, steps = dist.sum(sums + spikes, loader.device)
    rate = spiked / steps if steps else float("nan")
    means = dict(zip(("acc", *keys), (total / seen for total in totals)))
    return {**means, "firing_rate": rate}

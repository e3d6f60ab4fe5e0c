"""Multi-process training through ``torchrun``: process-group setup and exact metric reduction.

Every rank draws the same global batch (the shuffling generator is seeded by (seed, epoch)), then
takes its contiguous shard of it, so the union of the shards is exactly the single-process batch.
Test metrics are sums over disjoint, unpadded shards reduced with ``all_reduce``: no sample is
counted twice (the padded-sampler bias of the official DDP script).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Distributed", "close_distributed", "init_distributed"]


@dataclass(frozen=True)
class Distributed:
    """Rank and world size of this process (``world == 1``: no process group)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items (sizes differ by at most one)."""
        start = self.rank * n // self.world
        return slice(start, (self.rank + 1) * n // self.world)

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum a list of numbers over all ranks."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, tensor: Tensor) -> Tensor:
        """Rank 0's tensor, on every rank."""
        if self.world > 1:
            dist.broadcast(tensor, 0)
        return tensor

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BN running statistics), i.e. the saved model."""
        for buffer in model.buffers():
            self.broadcast(buffer)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns:
        ``(Distributed, device)``; on CUDA each rank takes ``cuda:LOCAL_RANK``. NCCL on GPU,
        gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(), device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Distributed(dist.get_rank(), dist.get_world_size()), device


def close_distributed() -> None:
    """Leave the process group that :func:`init_distributed` joined, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()

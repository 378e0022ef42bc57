"""Data parallelism across processes started by `torchrun`: NCCL on GPUs, gloo on CPUs.

Each process computes gradients on its own rows of the global batch; `all_reduce_grads` averages
them once per optimizer step, so every process applies the same update. That is what
`DistributedDataParallel` does, minus its bucketing and overlap, which buy nothing at the sizes
a CPU trains and would hide the one line that matters. Without torchrun, everything here is a
no-op for a world of one. Does not cover: model or pipeline parallelism, sharded optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_world() -> World:
    """One process, on the GPU when there is one."""
    return World(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def init_world() -> World:
    """Join the process group when launched by torchrun (it sets RANK, WORLD_SIZE, ...)."""
    cuda = torch.cuda.is_available()
    if not dist.is_torchelastic_launched():
        return local_world()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return World(rank=rank, size=dist.get_world_size(), device=device)


def close_world(world: World) -> None:
    if world.size > 1:
        # Rank 0 still writes the last checkpoint when the others arrive here; a rank that tore
        # down its gloo connections meanwhile once died with SIGABRT ("terminate called without
        # an active exception", 1 run in ~50). Everyone leaves together instead.
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world.size
    return t


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_grads(params: list[torch.nn.Parameter], world: World) -> None:
    """Average gradients over processes in one flat all-reduce."""
    grads = [p.grad for p in params if p.grad is not None]
    if world.size == 1 or not grads:
        return
    flat = all_reduce_mean(_flatten_dense_tensors(grads), world)
    for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(reduced)

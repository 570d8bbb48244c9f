"""Just enough of ``torch.distributed`` for one training loop to run under ``torchrun``.

Started by ``torchrun --nproc_per_node K`` (which sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``), the process group is created on first use: NCCL when training on CUDA, gloo on
CPU. Started as a plain ``python`` process, everything here is a no-op for a world of one.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and draws progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """How many processes ``torchrun`` started (1 outside ``torchrun``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's index on its node (0 outside ``torchrun``): the GPU it should use."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup(device: torch.device) -> DistributedContext:
    """Join (creating it on first call) the process group ``torchrun`` asked for.

    The backend follows the training device: NCCL for CUDA, gloo otherwise. A group that the
    caller already created is reused as it is.
    """
    if launched_world_size() == 1:
        return DistributedContext()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank())


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place; returned for chaining."""
    if context.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj, context: DistributedContext) -> list:
    """Every process's ``obj`` (picklable), indexed by rank."""
    if not context.is_distributed:
        return [obj]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    """Wait until every process arrives (for example before reading a file rank 0 wrote)."""
    if context.is_distributed:
        dist.barrier()


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

"""Which example each MIMO input slot sees in a training step: drawn reproducibly, the same
whether one process trains or several share the batch.

**The draw** (:func:`draw_slots`, after the uncertainty-baselines reference): the batch of N
examples is repeated ``batch_repetitions`` times (R = N * batch_repetitions rows) and every
slot gets its own random permutation of those R rows, so each slot sees every example
``batch_repetitions`` times, paired with other examples in the other slots. With probability
``input_repetition`` a row gives every slot slot 0's example instead (drawn per row, as the
paper states it; the reference code repeats a fixed fraction of the rows).

**Data parallelism.** Under ``torch.distributed`` each process holds its share of one global
batch (``ensemblekit.train_model`` gives rank k the k-th contiguous slice). Permuting each
share on its own would pair examples only within a share: two processes would train something
else than one. Instead every process gathers the whole global batch (:func:`gather_batch`: one
``all_gather`` of the inputs, and later of the labels; no gradients are needed through them),
draws the same global assignment from the same generator state, and computes its k-th slice
of the R rows. Together the processes compute exactly the rows one process would, and
DistributedDataParallel's gradient average over equal shares is the one process's gradient of
the mean loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def draw_slots(
    generator: torch.Generator, batch: int, members: int, input_repetition: float,
    batch_repetitions: int,
) -> torch.Tensor:
    """``(M, R)`` int64: row r of slot m reads example ``slots[m, r]`` of a batch of ``batch``.

    R = ``batch * batch_repetitions``. Drawn on the CPU from ``generator`` in a fixed order (M
    permutations, then the repetition draw), whatever ``input_repetition`` is, so runs that
    differ only in it share their permutations.
    """
    tiled = torch.arange(batch).repeat(batch_repetitions)
    slots = torch.stack([tiled[torch.randperm(len(tiled), generator=generator)]
                         for _ in range(members)])
    shared = torch.rand(len(tiled), generator=generator) < input_repetition
    return torch.where(shared, slots[0], slots)


def data_parallel_rank() -> tuple[int, int]:
    """``(rank, world_size)`` of this process under ``torch.distributed``, ``(0, 1)`` without."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(x: torch.Tensor, rank: int, world: int, *, check_sizes: bool) -> torch.Tensor:
    """Every process's ``x`` concatenated in rank order (``x`` itself in a world of one).

    This process's own block is ``x`` itself, so gradients still reach it. ``check_sizes``:
    first make sure every process holds as many rows (an ``all_gather`` of sizes), raising the
    same clear error on all of them otherwise.
    """
    if world == 1:
        return x
    if check_sizes:
        size = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.empty_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        sizes = [int(s) for s in sizes]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"MIMO training under torch.distributed draws its slot permutations over the "
                f"global batch, so every process needs a share of the same size; got {sizes} "
                "rows per rank: give every process the same batch size (ensemblekit."
                "train_model does)"
            )
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    parts[rank] = x
    return torch.cat(parts)

"""Batch samplers for members that each follow their own order of the data.

A deep ensemble built with ``independent_batches=True`` (``model.independent_member_batches``)
trains every member on its own shuffle, as independently trained models would be. Give its
``DataLoader`` a :class:`MemberBatchSampler`::

    sampler = MemberBatchSampler(len(dataset), 128, model.num_members, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:                     # x: (M*B, ...), member-major
            loss = F.cross_entropy(model(x), model.training_targets(y))   # targets: identity

Each batch has M*B rows; rows ``m*B:(m+1)*B`` are member m's batch, drawn from member m's own
permutation of the dataset. The last batch of an epoch may be smaller (B' < B rows per member,
still M equal blocks) unless ``drop_last``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from ._validation import check_int, check_seed


class MemberBatchSampler(Sampler[list[int]]):
    """Member-major index batches of ``num_members * batch_size``, one permutation per member.

    Args:
        dataset_size: number of examples N.
        batch_size: B, examples per member per batch.
        num_members: M.
        drop_last: drop the last, smaller batch of each epoch.
        seed: member m's order in epoch e depends on (seed, e, m) only, so a run resumes
            exactly after ``set_epoch(e)``; ``None`` draws a seed from torch's global generator.
    """

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        num_members: int,
        *,
        drop_last: bool = False,
        seed: int | None = None,
    ) -> None:
        self.dataset_size = check_int("dataset_size", dataset_size, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.num_members = check_int("num_members", num_members, minimum=1)
        self.drop_last = bool(drop_last)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.seed = check_seed(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the permutations of ``epoch`` (call before iterating, as with DistributedSampler)."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    def member_permutation(self, member: int) -> torch.Tensor:
        """Member ``member``'s order of the dataset in the current epoch."""
        entropy = np.random.SeedSequence([self.seed, self.epoch, member]).generate_state(2)
        generator = torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))
        return torch.randperm(self.dataset_size, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        orders = torch.stack([self.member_permutation(m) for m in range(self.num_members)])
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            # (M, B') -> M*B' indices, member-major
            yield orders[:, start : start + self.batch_size].reshape(-1).tolist()

    def __len__(self) -> int:
        if self.drop_last:
            return self.dataset_size // self.batch_size
        return -(-self.dataset_size // self.batch_size)

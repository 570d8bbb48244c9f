"""Training data in batches: which rows each batch holds, on which process, as which tensors.

In-memory tensors are batched by indexing (no per-item Python work, moved to the device once),
any other ``Dataset`` through a ``DataLoader`` fed the same index batches. A global batch is
cut into this process's rows by :func:`shard`, so K processes together see what one would.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .. import distributed
from .._validation import check_finite, check_tensor
from ..data import normalizer, train_augmentation
from ..methods.task import model_num_outputs, model_task
from ..samplers import MemberBatchSampler
from .config import TrainConfig, Transform


def check_batch_size(model: nn.Module, batch_size: int, *, processes: int = 1,
                     use: str = "batch_size={}") -> int:
    """The number of rows every global batch must be a multiple of: ``model.batch_multiple``
    (one group per member; 1 for a plain module) times ``processes``. Raises ``ValueError``
    if ``batch_size`` is not a multiple, suggesting the nearest one as ``use.format(nearest)``
    (e.g. ``"--batch-size {}"`` on the command line)."""
    multiple = getattr(model, "batch_multiple", 1)
    unit = multiple * processes
    if batch_size % unit != 0:
        nearest = max(unit, round(batch_size / unit) * unit)
        why = f"the model's batch_multiple ({multiple}, one group per member)"
        if processes > 1:
            why += f" times the {processes} processes (each process's batch must be a multiple)"
        raise ValueError(
            f"batch_size={batch_size} must be a multiple of {unit}: {why}; "
            f"use {use.format(nearest)}"
        )
    return unit


def steps_per_epoch(num_items: int, batch_size: int, unit: int) -> int:
    """Optimizer steps in one epoch of ``num_items`` rows: the full batches, plus the short last
    one when it keeps at least ``unit`` rows (it is trimmed to a multiple of ``unit``).
    Raises ``ValueError`` if that is none."""
    full, rest = divmod(num_items, batch_size)
    steps = full + (1 if rest >= unit else 0)
    if steps == 0:
        raise ValueError(f"train_data holds {num_items} examples, fewer than one training batch "
                         f"needs ({unit}: batches are a multiple of the model's member "
                         "groups and processes); pass more examples")
    return steps


def data_hooks(config: TrainConfig) -> tuple[Transform | None, Transform | None]:
    """``(augment, normalize)`` for training: the config's own, or its dataset's by name."""
    augment = config.augment if callable(config.augment) else None
    normalize = config.normalize
    if config.dataset is not None:
        if normalize is None:
            normalize = normalizer(config.dataset)
        if config.augment is None:
            augment = train_augmentation(config.dataset)
    return augment, normalize


def training_targets(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The targets of ``model``'s training logits: ``model.training_targets(y)`` (tiled for
    methods that tile the batch), or ``y`` itself for a plain module."""
    targets = getattr(model, "training_targets", None)
    return y if targets is None else targets(y)


def checked_data(model: nn.Module, train_data, validation_data, augment, normalize
                  ) -> tuple[TrainingData, TrainingData | None]:
    """The training and validation data, checked (labels within the model's classes -- float
    targets of its ``num_outputs`` for a regression model --, images in [0, 1] where a hook
    expects them); validation ``None`` without ``validation_data``."""
    num_classes = (getattr(model, "config", None) or {}).get("num_classes")
    num_outputs = model_num_outputs(model) if model_task(model) == "regression" else None
    data = TrainingData(train_data, needs_unit_range=augment is not None or normalize is not None,
                        num_classes=num_classes, num_outputs=num_outputs)
    validation = None
    if validation_data is not None:
        validation = TrainingData(validation_data, needs_unit_range=normalize is not None,
                                  num_classes=num_classes, num_outputs=num_outputs)
    return data, validation


def epoch_batches(
    model: nn.Module,
    num_items: int,
    batch_size: int,
    unit: int,
    generator: torch.Generator,
    epoch: int,
    seed: int,
) -> tuple[list[torch.Tensor], int]:
    """One epoch's global index batches, and how many member groups each batch is made of.

    Ordinarily a permutation drawn from ``generator`` cut into ``batch_size`` rows, the last,
    short batch trimmed to a multiple of ``unit`` (batch_multiple x processes) or dropped if
    nothing is left: groups = ``model.batch_multiple``. A model with
    ``independent_member_batches`` (deep ensembles with their own data order per member) gets
    :class:`~ensemblekit.samplers.MemberBatchSampler` batches instead: M blocks of
    ``batch_size`` rows, block m from member m's own permutation (a function of seed, epoch
    and m); groups = M.
    """
    if getattr(model, "independent_member_batches", False):
        members = model.num_members
        sampler = MemberBatchSampler(num_items, batch_size, members, seed=seed)
        sampler.set_epoch(epoch)
        blocks = [torch.tensor(batch).view(members, -1) for batch in sampler]
        blocks = [block[:, : block.shape[1] - block.shape[1] % unit] for block in blocks]
        return [block.reshape(-1) for block in blocks if block.numel()], members
    order = torch.randperm(num_items, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches[-1]) % unit:
        batches[-1] = batches[-1][: len(batches[-1]) - len(batches[-1]) % unit]
    return [batch for batch in batches if len(batch)], getattr(model, "batch_multiple", 1)


def shard(batch: torch.Tensor, groups: int, context: distributed.DistributedContext):
    """This process's rows of a global batch that is made of ``groups`` contiguous groups.

    Each group (one per member for Masksembles) is cut into ``world_size`` slices and this rank
    takes slice ``rank`` of every group, so each process's batch is again member-major and the
    processes together see exactly the (row, member) pairs a single process would.
    """
    if not context.is_distributed:
        return batch
    per_rank = batch.reshape(groups, context.world_size, -1)[:, context.rank]
    return per_rank.reshape(-1)


class TrainingData:
    """Training examples as device tensors (indexed directly) or a Dataset (through a loader).

    ``train_data``: ``(images (N, ...), labels (N,))`` tensors, a Dataset of two such tensors,
    or any Dataset of ``(image, label)`` pairs. Checked when constructed: ``needs_unit_range``
    asks for images in [0, 1] (the data hooks expect them), ``num_classes`` bounds the labels.
    ``num_outputs`` (a regression model's D; None for a classifier): the labels are float
    targets ``(N, D)`` (``(N,)`` when D = 1, read as ``(N, 1)``), yielded as float32 ``(B, D)``.
    """

    def __init__(self, train_data, *, needs_unit_range: bool, num_classes: int | None,
                 num_outputs: int | None = None) -> None:
        self.images = self.labels = None
        self.dataset = None
        self.num_outputs = num_outputs
        if _holds_tensors(train_data):  # TensorDataset, ensemblekit's InMemoryDataset
            train_data = train_data.tensors
        if isinstance(train_data, (tuple, list)):
            if len(train_data) != 2:
                raise ValueError(f"train_data as a sequence must be (images, labels), got "
                                 f"{len(train_data)} items")
            if num_outputs is None:
                self.images, self.labels = self._check_tensors(*train_data, needs_unit_range,
                                                               num_classes)
            else:
                self.images, self.labels = self._check_regression(*train_data, needs_unit_range,
                                                                  num_outputs)
        elif isinstance(train_data, Dataset):
            self.dataset = train_data
            if len(train_data) == 0:
                raise ValueError("train_data is an empty dataset")
        else:
            raise TypeError(f"train_data must be (images, labels) tensors or a Dataset, got "
                            f"{type(train_data).__name__}")

    @staticmethod
    def _check_tensors(images, labels, needs_unit_range, num_classes):
        _check_pair(("images", images), ("labels", labels), ndim=1, shape="(N,)")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point (in [0, 1]), got {images.dtype}; "
                             "convert with images.float() / 255")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
        _check_images(images, needs_unit_range)
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            valid = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
            raise ValueError(f"labels must be class indices in {valid}, got labels in "
                             f"[{low}, {high}]; out-of-distribution sets (label -1) cannot be "
                             "trained on")
        return images, labels.long()

    @staticmethod
    def _check_regression(inputs, targets, needs_unit_range, num_outputs):
        """Float ``inputs`` (N, ...) and finite float targets (N, D) (or (N,) for D = 1)."""
        _check_pair(("inputs", inputs), ("targets", targets), ndim=(1, 2), shape="(N, D)")
        if not inputs.is_floating_point():
            raise ValueError(f"inputs must be floating point, got {inputs.dtype}; convert with "
                             "inputs.float()")
        if not targets.is_floating_point():
            raise ValueError(f"a regression model trains on float targets, got {targets.dtype} "
                             "(class labels?); pass targets.float(), or build the model for "
                             "classification")
        targets = targets.reshape(len(targets), -1) if targets.ndim == 1 else targets
        if targets.shape[1] != num_outputs:
            raise ValueError(f"targets have {targets.shape[1]} outputs per example (shape "
                             f"{tuple(targets.shape)}), but the model was built with "
                             f"num_outputs={num_outputs}; build it with num_outputs="
                             f"{targets.shape[1]} or pass (N, {num_outputs}) targets")
        _check_images(inputs, needs_unit_range)
        check_finite("targets", targets)
        return inputs, targets.float()

    def __len__(self) -> int:
        return len(self.labels) if self.dataset is None else len(self.dataset)

    def batches(self, indices: list[torch.Tensor], device, num_workers: int) -> Iterator[tuple]:
        """``(x, y)`` on ``device`` for each index batch, in order."""
        if self.dataset is None:
            if self.images.device != device:  # moved once, then indexed on the device
                self.images, self.labels = self.images.to(device), self.labels.to(device)
            for index in indices:
                index = index.to(device)
                yield self.images[index], self.labels[index]
            return
        loader = DataLoader(self.dataset, batch_sampler=[index.tolist() for index in indices],
                            num_workers=num_workers, pin_memory=device.type == "cuda")
        for x, y in loader:
            y = torch.as_tensor(y)
            y = y.long() if self.num_outputs is None else y.float().reshape(len(y), -1)
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _check_pair(first: tuple[str, torch.Tensor], second: tuple[str, torch.Tensor], *, ndim,
                shape: str) -> None:
    """Two named tensors, ``(N, ...)`` and ``second`` of rank ``ndim`` (``shape``), non-empty
    and of one N."""
    (name, x), (other, y) = first, second
    check_tensor(name, x)
    check_tensor(other, y, ndim=ndim)
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name} (N, ...) and {other} {shape} must be non-empty and agree on N, "
                         f"got shapes {tuple(x.shape)} and {tuple(y.shape)}")


def _check_images(images: torch.Tensor, needs_unit_range: bool) -> None:
    """Finite images, in [0, 1] where the data hooks expect them."""
    check_finite("images", images)  # one NaN image turns every weight into NaN
    if needs_unit_range and (images.min() < 0 or images.max() > 1):
        raise ValueError(
            f"images must lie in [0, 1] (got values in [{images.min():.3g}, "
            f"{images.max():.3g}]): train_model augments and normalises them itself, so pass "
            "raw images, not normalised ones"
        )


def _holds_tensors(data) -> bool:
    """True for a Dataset that is two tensors and nothing else (indexed directly, no loader)."""
    return (isinstance(data, Dataset) and isinstance(getattr(data, "tensors", None), tuple)
            and len(data.tensors) == 2 and getattr(data, "transform", None) is None)

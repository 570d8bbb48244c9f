"""Datasets held as two tensors, and the fast path that turns any dataset into tensors.

Small datasets (digits, the toy sets, corrupted copies) live entirely in memory so that a trainer
can batch them by slicing, with no per-item Python work: ``images, labels = as_tensors(ds)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision.transforms import ToTensor


class InMemoryDataset(Dataset):
    """``(image, label)`` pairs stored as two tensors.

    Args:
        images: ``(N, C, H, W)`` float in [0, 1] (or ``(N, D)`` points), or ``uint8`` in
            [0, 255] (kept compact; scaled to [0, 1] floats when read).
        labels: ``(N,)`` integer class indices (-1 for out-of-distribution sets).
        transform: optional callable applied to each float image when indexed.
        classes: optional class names.

    ``dataset.tensors`` is ``(images float32, labels int64)`` -- the data before ``transform``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        transform: Callable | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length, got {images.shape[0]} images "
                f"and {labels.shape[0]} labels"
            )
        if labels.ndim != 1:
            raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.transform = transform
        self.classes = classes

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)``: images float32 (in [0, 1] for image data), labels int64."""
        return _as_float(self.images), self.labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = _as_float(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


#: The image conversion every torchvision-backed loader installs; ``as_tensors`` recognises it
#: and reads the decoded arrays directly instead of going image by image.
PLAIN_TO_TENSOR = ToTensor()


def as_tensors(dataset: Dataset, *, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``dataset`` as ``(images float32 (N, ...), labels int64 (N,))`` -- for a
    regression set (:class:`~ensemblekit.data.regression.RegressionDataset`) ``(features
    float32 (N, F), targets float32 (N, D))``.

    Fast paths (no per-item work): datasets exposing ``.tensors`` (:class:`InMemoryDataset`,
    ``torch.utils.data.TensorDataset``, CIFAR-10-C folders), ``Subset`` of those, and the
    torchvision MNIST / CIFAR / SVHN datasets built by :func:`load_dataset` (without a user
    ``transform``). Anything else is read once through a ``DataLoader``.
    """
    if isinstance(dataset, Subset):
        indices = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        inner = _fast_tensors(dataset.dataset)
        if inner is not None:
            return inner[0][indices], inner[1][indices]
    fast = _fast_tensors(dataset)
    if fast is not None:
        return fast
    batches = list(DataLoader(dataset, batch_size=batch_size, shuffle=False))
    if not batches:
        raise ValueError("as_tensors got an empty dataset")
    images = torch.cat([torch.as_tensor(images) for images, _ in batches]).float()
    labels = torch.cat([torch.as_tensor(labels) for _, labels in batches])
    # Regression targets stay float; class labels become int64.
    return images, labels.float() if labels.is_floating_point() else labels.long()


def _fast_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            return None
        images, labels = dataset.tensors
        return _as_float(images), labels.long()
    if hasattr(dataset, "tensors") and getattr(dataset, "transform", None) is None:
        return dataset.tensors
    if getattr(dataset, "transform", None) is not PLAIN_TO_TENSOR:
        return None
    if getattr(dataset, "target_transform", None) is not None:
        return None
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", getattr(dataset, "labels", None))
    if data is None or targets is None:
        return None
    images = torch.as_tensor(np.asarray(data))
    if images.ndim == 3:  # MNIST-style (N, H, W) greyscale
        images = images.unsqueeze(1)
    elif images.ndim == 4 and images.shape[-1] in (1, 3):  # CIFAR-style (N, H, W, C)
        images = images.permute(0, 3, 1, 2)
    return _as_float(images.contiguous()), torch.as_tensor(np.asarray(targets)).long()


def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()

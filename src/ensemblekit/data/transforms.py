"""Normalisation and training augmentation, on batches of [0, 1] images already on the device.

Order in a pipeline: augment (training) or corrupt (evaluation) the [0, 1] images first, then
normalise with the statistics of the dataset the *model* was trained on -- also for OOD images
(``normalize(svhn_images, "cifar10")``), since the model only knows its own input scale.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_int, check_tensor
from .registry import dataset_info


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel for dataset ``name``: ``(B, C, H, W)`` or ``(B, D)``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        info = dataset_info(name)
        shape = (1, -1, 1, 1) if info.is_image else (1, -1)
        self.name = name
        self.register_buffer("mean", torch.tensor(info.mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(info.std).view(shape), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images)) / self.std.to(images)

    def extra_repr(self) -> str:
        return f"{self.name!r}"


def normalize(images: torch.Tensor, name: str) -> torch.Tensor:
    """Normalise a batch of [0, 1] images with dataset ``name``'s channel mean and std."""
    check_tensor("images", images)
    return Normalize(name)(images)


def normalizer(name: str) -> Normalize | None:
    """The normalisation module for ``name``; None for point data (raw coordinates go in as is)."""
    return Normalize(name) if dataset_info(name).is_image else None


class RandomCropFlip(nn.Module):
    """Batched training augmentation: random crop after zero ``padding``, optional h-flip.

    Each image gets its own offset (uniform in [0, 2*padding]) and flip (probability 1/2),
    drawn from ``generator`` or torch's global generator on the images' device.
    Shape ``(B, C, H, W)`` in and out; no per-image Python loop.
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        self.padding = check_int("padding", padding, minimum=0)
        self.flip = bool(flip)

    def forward(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_tensor("images", images, ndim=4)
        batch, _, height, width = images.shape
        device = images.device
        out = images
        if self.padding:
            pad = self.padding
            padded = nn.functional.pad(images, (pad, pad, pad, pad))
            top = torch.randint(0, 2 * pad + 1, (batch, 1), device=device, generator=generator)
            left = torch.randint(0, 2 * pad + 1, (batch, 1), device=device, generator=generator)
            rows = (top + torch.arange(height, device=device)).view(batch, 1, height, 1)
            cols = (left + torch.arange(width, device=device)).view(batch, 1, 1, width)
            index = torch.arange(batch, device=device).view(batch, 1, 1, 1)
            channel = torch.arange(images.shape[1], device=device).view(1, -1, 1, 1)
            out = padded[index, channel, rows, cols]
        if self.flip:
            flip = torch.rand(batch, device=device, generator=generator) < 0.5
            out = torch.where(flip.view(batch, 1, 1, 1), out.flip(-1), out)
        return out

    def extra_repr(self) -> str:
        return f"padding={self.padding}, flip={self.flip}"


def train_augmentation(name: str) -> RandomCropFlip | None:
    """The standard training augmentation of dataset ``name``, or None if it has none.

    CIFAR-10/100: crop after 4-pixel padding + horizontal flip. SVHN: crop 4, no flip (digits).
    Digits: crop after 1-pixel padding (a 1-pixel shift), no flip. MNIST, Fashion-MNIST, the
    toy sets: none. ImageNet: random-resized crop and flip happen when images are loaded
    (their sizes differ), so none here.
    """
    info = dataset_info(name)
    if not info.is_image or (info.crop_padding == 0 and not info.hflip):
        return None
    return RandomCropFlip(info.crop_padding, info.hflip)


def augment(
    images: torch.Tensor, name: str, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply :func:`train_augmentation` of ``name`` to a batch (unchanged if it has none)."""
    module = train_augmentation(name)
    return images if module is None else module(images, generator)

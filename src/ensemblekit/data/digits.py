"""The embedded default: scikit-learn's bundled 8x8 handwritten digits (always offline).

1797 real handwritten digits (the UCI "optdigits" set: 32x32 binary scans, each 4x4 block
counted into a value 0..16). Here divided by 16 into [0, 1] as ``(1, 8, 8)`` float images, and
split once, per class, with a fixed seed: 30 % test (539 images), 70 % train (1258 images).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .in_memory import InMemoryDataset
from .registry import DatasetInfo, register_dataset
from .validation import stratified_split

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.3

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=10,
    in_channels=1,
    image_size=(8, 8),
    # Measured on the train split (tests/test_data.py checks these numbers).
    mean=(0.3056,),
    std=(0.3761,),
    splits=("train", "test"),
    ood="letters",
    # Digits are not mirror-symmetric (no flip); a one-pixel shift is the scale of CIFAR's 4/32.
    crop_padding=1,
    hflip=False,
    embedded=True,
    description="scikit-learn's 8x8 handwritten digits (embedded; 1258 train / 539 test)",
)


@register_dataset(DIGITS_INFO)
def load_digits_dataset(split: str, data_dir: Path, download: bool, transform) -> InMemoryDataset:
    """Split ``"train"`` or ``"test"`` of the digits: images ``(N, 1, 8, 8)`` in [0, 1]."""
    images, labels = _digits_arrays()
    train_index, test_index = _split_indices(labels.numpy())
    index = torch.from_numpy(train_index if split == "train" else test_index)
    return InMemoryDataset(
        images[index].clone(),
        labels[index].clone(),
        transform=transform,
        classes=[str(digit) for digit in range(10)],
    )


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images / 16.0).float().unsqueeze(1)
    return images, torch.from_numpy(bunch.target).long()


def _split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: in each class, a seeded permutation's first 30 % go to test."""
    return stratified_split(labels, DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED)

"""The validation split: a fixed, seeded part of a training split held out for every choice.

Settings, configurations and post-hoc calibration are chosen on it, never on the test set.
The split depends only on the training labels, the fraction and :data:`VALIDATION_SEED` --
never on a run's seed -- so every method and every seed sees the same validation images.

Default fractions (:func:`default_validation_fraction`): digits 20 % of its 1258 training
images (250 images, 25 per class to rounding, stratified; training keeps 1008), every other
dataset 10 % of its training split. Test sets, corrupted test sets (CIFAR-10-C) and OOD sets
are never split. Within each class a seeded permutation's first
``round(fraction * class size)`` indices are held out (the same rule the digits' own
train/test split uses); datasets whose labels cannot be read without loading every image, and
regression sets (float targets, no classes), are split by one seeded permutation instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .._validation import check_float, check_seed

#: The seed of every validation split (fixed: not a run's seed).
VALIDATION_SEED = 0
#: Digits are few (1258 training images): a fifth, so that validation NLL / ECE rest on ~250.
DIGITS_VALIDATION_FRACTION = 0.2
#: Every other dataset (the torchvision sets, ImageNet folders, the toy sets).
DEFAULT_VALIDATION_FRACTION = 0.1


def default_validation_fraction(dataset: str) -> float:
    """The fraction of ``dataset``'s training split held out for validation."""
    return DIGITS_VALIDATION_FRACTION if dataset == "digits" else DEFAULT_VALIDATION_FRACTION


def stratified_split(labels, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)`` (each sorted, int64) of labels ``(N,)``.

    In each class (in ascending label order) a permutation drawn from
    ``numpy.random.default_rng(seed)`` is taken; its first ``round(fraction * class size)``
    indices are held out, the rest kept.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_held = int(round(fraction * members.size))
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return (np.sort(np.concatenate(kept)).astype(np.int64),
            np.sort(np.concatenate(held)).astype(np.int64))


def split_validation(train, fraction: float, *, seed: int = VALIDATION_SEED):
    """``(train_part, validation_part)`` of a training split; ``validation_part`` is None when
    ``fraction`` is 0.

    ``train``: ``(images (N, ...), labels (N,))`` tensors -- then both parts are such tuples --
    or a ``Dataset`` -- then both are ``torch.utils.data.Subset`` of it. Stratified by class
    when the labels are at hand (tensors, ``InMemoryDataset``, torchvision's ``targets`` /
    ``labels``); otherwise one seeded permutation's first ``round(fraction * N)`` indices.
    """
    fraction = check_float("validation_fraction", fraction, minimum=0.0, maximum=1.0,
                           max_inclusive=False)
    seed = check_seed(seed)
    if isinstance(train, (tuple, list)):
        if len(train) != 2 or len(train[0]) != len(train[1]):
            raise ValueError("train as a pair must be (images (N, ...), labels (N,)) tensors")
        size = len(train[1])
    elif isinstance(train, Dataset):
        size = len(train)
    else:
        raise TypeError(f"train must be (images, labels) tensors or a Dataset, got "
                        f"{type(train).__name__}")
    if fraction == 0.0:
        return train, None
    labels = _labels(train)
    if labels is not None:
        kept, held = stratified_split(labels, fraction, seed=seed)
    else:
        order = np.random.default_rng(seed).permutation(size)
        n_held = int(round(fraction * size))
        kept, held = np.sort(order[n_held:]), np.sort(order[:n_held])
    if held.size == 0 or kept.size == 0:
        raise ValueError(f"validation_fraction={fraction} of {size} training examples leaves "
                         f"{held.size} for validation and {kept.size} for training; choose a "
                         "fraction that leaves both non-empty (or 0 for no validation split)")
    if isinstance(train, Dataset):
        return Subset(train, kept.tolist()), Subset(train, held.tolist())
    kept, held = torch.from_numpy(kept), torch.from_numpy(held)
    images, labels = train
    return (images[kept], labels[kept]), (images[held], labels[held])


def _labels(train) -> np.ndarray | None:
    """The class labels ``(N,)`` of a training split, if they can be read without its images;
    None for regression targets (floating point: no classes to stratify by)."""
    if isinstance(train, (tuple, list)):
        return _class_labels(torch.as_tensor(train[1]).cpu().numpy())
    for name in ("labels", "targets"):  # InMemoryDataset and SVHN: labels; the others: targets
        values = getattr(train, name, None)
        if values is not None and len(values) == len(train):
            return _class_labels(np.asarray(values))
    return None


def _class_labels(values: np.ndarray) -> np.ndarray | None:
    return None if np.issubdtype(values.dtype, np.floating) else values

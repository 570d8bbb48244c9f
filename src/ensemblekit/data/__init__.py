"""Datasets, corruptions and OOD pairs: everything the evaluation protocol reads.

Entry points: :func:`load_dataset` (a torch ``Dataset`` of ``(image in [0, 1], label)``),
:func:`dataset_info`, :func:`as_tensors` (the in-memory fast path), :func:`normalize` /
:func:`normalizer` and :func:`train_augmentation` (batched, applied by the trainer),
:func:`corrupt` and :func:`make_corrupted` (shifted test sets), :func:`ood_dataset`,
:func:`split_validation` (the fixed validation part of a training split).

Images stay in [0, 1] until a batch is normalised, so corruptions can be applied in between;
see :mod:`ensemblekit.data.registry`. Registered names:

- embedded (offline): ``digits`` (default), ``letters`` (digits' OOD set), ``toy_moons``,
  ``toy_blobs`` and their OOD sets ``toy_moons_far``, ``toy_blobs_far``;
- files on disk (``download=True`` on a machine with internet): ``mnist``, ``fashion_mnist``,
  ``cifar10``, ``cifar100``, ``svhn``, ``cifar10_c``; ``imagenet`` (ImageFolder, no download).
"""

from . import (  # noqa: F401  (register the loaders)
    cifar10_c,  # noqa: F401  (after vision: reuses CIFAR-10's statistics)
    digits,
    imagenet,
    letters,
    toy,
    vision,
)
from .batches import rebatch
from .cifar10_c import corrupted_split, read_corrupted_folder, write_corrupted_folder
from .corruptions import (
    BENCHMARK_CORRUPTIONS,
    CIFAR_SEVERITY_PARAMETERS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    corrupt,
)
from .in_memory import InMemoryDataset, as_tensors
from .letters import render_letters
from .ood import ood_dataset, ood_pairs
from .preview import corruption_grid, example_scene, save_corruption_preview
from .registry import (
    DatasetInfo,
    available_datasets,
    dataset_info,
    default_data_dir,
    load_dataset,
    register_dataset,
)
from .shifted import CorruptedSets, corrupt_tensor, corrupted_batches, make_corrupted, quantize
from .toy import ToyGrid, far_points, make_blobs, make_moons, toy_grid
from .transforms import (
    Normalize,
    RandomCropFlip,
    augment,
    normalize,
    normalizer,
    train_augmentation,
)
from .validation import (
    VALIDATION_SEED,
    default_validation_fraction,
    split_validation,
    stratified_split,
)

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CIFAR_SEVERITY_PARAMETERS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "VALIDATION_SEED",
    "CorruptedSets",
    "DatasetInfo",
    "InMemoryDataset",
    "Normalize",
    "RandomCropFlip",
    "ToyGrid",
    "as_tensors",
    "augment",
    "available_datasets",
    "corrupt",
    "corrupt_tensor",
    "corrupted_batches",
    "corrupted_split",
    "corruption_grid",
    "dataset_info",
    "default_data_dir",
    "default_validation_fraction",
    "example_scene",
    "far_points",
    "load_dataset",
    "make_blobs",
    "make_corrupted",
    "make_moons",
    "normalize",
    "normalizer",
    "ood_dataset",
    "ood_pairs",
    "quantize",
    "read_corrupted_folder",
    "rebatch",
    "register_dataset",
    "render_letters",
    "save_corruption_preview",
    "split_validation",
    "stratified_split",
    "toy_grid",
    "train_augmentation",
    "write_corrupted_folder",
]

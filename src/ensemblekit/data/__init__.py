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

Regression sets (``dataset_info(name).task == "regression"``; items ``(features, targets)``,
standardised on the training part, see :mod:`ensemblekit.data.regression`):

- embedded (offline): ``diabetes`` (real, scikit-learn's), ``toy_cubic``, ``toy_in_between``,
  ``toy_hetero_sine`` (generated, :mod:`ensemblekit.data.regression_toys`);
- files on disk (no download): ``uci-<name>`` for the nine sets of the UCI release
  (``uci-bostonHousing``, ``uci-concrete``, ...; any other folder in the layout through
  :func:`register_uci_dataset`), split ``"train-<i>"`` / ``"test-<i>"`` (:mod:`.uci`).
"""

from . import (  # noqa: F401  (register the loaders)
    cifar10_c,  # noqa: F401  (after vision: reuses CIFAR-10's statistics)
    diabetes,
    digits,
    imagenet,
    letters,
    regression_toys,
    toy,
    uci,
    vision,
)
from .batches import rebatch
from .cifar10_c import corrupted_split, read_corrupted_folder, write_corrupted_folder
from .corruption_severities import (
    BENCHMARK_CORRUPTIONS,
    CIFAR_SEVERITY_PARAMETERS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)
from .corruptions import corrupt
from .in_memory import InMemoryDataset, as_tensors
from .letters import render_letters
from .ood import ood_dataset, ood_pairs
from .preview import corruption_grid, example_scene, save_corruption_preview
from .registry import (
    TASKS,
    DatasetInfo,
    available_datasets,
    dataset_info,
    default_data_dir,
    load_dataset,
    register_dataset,
)
from .regression import RegressionDataset, Standardization
from .regression_toys import REGRESSION_TOYS, RegressionToy, make_regression_toy
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
from .uci import (
    UCI_DATASETS,
    UCIProtocol,
    read_uci,
    register_uci_dataset,
    uci_protocol,
    uci_split,
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
    "REGRESSION_TOYS",
    "SEVERITIES",
    "TASKS",
    "UCI_DATASETS",
    "VALIDATION_SEED",
    "CorruptedSets",
    "DatasetInfo",
    "InMemoryDataset",
    "Normalize",
    "RandomCropFlip",
    "RegressionDataset",
    "RegressionToy",
    "Standardization",
    "ToyGrid",
    "UCIProtocol",
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
    "make_regression_toy",
    "normalize",
    "normalizer",
    "ood_dataset",
    "ood_pairs",
    "quantize",
    "read_corrupted_folder",
    "read_uci",
    "rebatch",
    "register_dataset",
    "register_uci_dataset",
    "render_letters",
    "save_corruption_preview",
    "split_validation",
    "stratified_split",
    "toy_grid",
    "train_augmentation",
    "uci_protocol",
    "uci_split",
    "write_corrupted_folder",
]

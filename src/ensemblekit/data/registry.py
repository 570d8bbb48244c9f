"""One entry point for every dataset: a small registry of names, metadata and loaders.

Design (shared by every dataset here): ``load_dataset`` returns images as float tensors in
[0, 1] -- *not* normalised -- because corruptions are defined on [0, 1] images. The trainer and
the evaluator normalise batches themselves with :func:`ensemblekit.data.normalize` (or the
module from :func:`ensemblekit.data.normalizer`) after any augmentation or corruption::

    test = load_dataset("digits", "test")           # (1, 8, 8) images in [0, 1]
    images, labels = as_tensors(test)                # (N, 1, 8, 8), (N,)
    shifted = corrupt(images, "fog", 3, seed=0)      # still in [0, 1]
    logits = model(normalize(shifted, "digits"))

Each loader registers itself with :func:`register_dataset` next to its code; importing
:mod:`ensemblekit.data` imports them all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from .._validation import check_choice

#: Environment variable naming the default data folder (used when ``data_dir`` is None).
DATA_DIR_ENV = "ENSEMBLEKIT_DATA"
#: What a dataset's targets are: class labels or real-valued regression targets.
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a pipeline need to know about a dataset, without loading it.

    Attributes:
        name: registry name.
        num_classes: number of classes K (0 for OOD-only sets, whose labels are all -1, and for
            regression sets).
        in_channels: image channels C; for point data, the number of coordinates; for
            regression sets, the number of input features.
        image_size: ``(H, W)`` of the images ``load_dataset`` returns; None for point data.
        mean, std: per-channel statistics of the training images in [0, 1], used by
            :func:`~ensemblekit.data.normalize` (all zeros / ones for point data).
        splits: valid ``split`` arguments of ``load_dataset``.
        ood: name of the dataset used as its out-of-distribution test set, or None.
        crop_padding: training augmentation: random crop after this much zero padding (0: none).
        hflip: training augmentation: random horizontal flip.
        embedded: True if it loads offline with no files (generated or bundled).
        folder: sub-folder of ``data_dir`` that holds the files (None when embedded).
        layout: the expected on-disk layout, as shown in the missing-data error.
        description: one line for listings.
        task: ``"classification"`` (items ``(input, int label)``) or ``"regression"`` (items
            ``(features (F,), targets (D,))`` as float tensors, standardised with the training
            part's statistics; see :mod:`ensemblekit.data.regression`).
        num_outputs: regression: the number of targets D per input; 0 for classification sets
            (their outputs are the ``num_classes`` logits).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int] | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    splits: tuple[str, ...]
    ood: str | None = None
    crop_padding: int = 0
    hflip: bool = False
    embedded: bool = False
    folder: str | None = None
    layout: str = ""
    description: str = ""
    task: str = "classification"
    num_outputs: int = 0

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        if self.task == "regression" and (self.num_outputs < 1 or self.num_classes != 0):
            raise ValueError(f"regression dataset {self.name!r} needs num_outputs >= 1 and "
                             f"num_classes 0, got {self.num_outputs} and {self.num_classes}")
        if self.task == "classification" and self.num_outputs != 0:
            raise ValueError(f"classification dataset {self.name!r} has num_classes outputs; "
                             f"leave num_outputs at 0, got {self.num_outputs}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input: ``(C, H, W)`` for images, ``(in_channels,)`` for points."""
        if self.image_size is None:
            return (self.in_channels,)
        return (self.in_channels, *self.image_size)

    @property
    def num_features(self) -> int:
        """Number of values in one flattened input (the input width of an MLP)."""
        return math.prod(self.input_shape)

    @property
    def is_image(self) -> bool:
        """True for image data (corruptions, augmentation and normalisation apply)."""
        return self.image_size is not None

    @property
    def is_regression(self) -> bool:
        """True for a regression set (float targets, no classes)."""
        return self.task == "regression"


#: ``loader(split, data_dir, download, transform) -> Dataset``; ``data_dir`` already resolved.
Loader = Callable[[str, Path, bool, Callable | None], Dataset]

_REGISTRY: dict[str, tuple[DatasetInfo, Loader]] = {}


def register_dataset(info: DatasetInfo) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader`` under ``info.name`` (a name registers once)."""

    def decorate(loader: Loader) -> Loader:
        if info.name in _REGISTRY:
            raise ValueError(f"dataset {info.name!r} is already registered")
        _REGISTRY[info.name] = (info, loader)
        return loader

    return decorate


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, in registration order."""
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of dataset ``name`` (no file is read)."""
    check_choice("dataset name", name, _REGISTRY)
    return _REGISTRY[name][0]


def default_data_dir() -> Path:
    """``$ENSEMBLEKIT_DATA`` if set, else ``./data`` (relative to the working directory)."""
    return Path(os.environ.get(DATA_DIR_ENV, "data")).expanduser()


def load_dataset(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    transform: Callable | None = None,
) -> Dataset:
    """Load split ``split`` of dataset ``name`` as a torch ``Dataset`` of ``(image, label)``.

    Args:
        name: a name from :func:`available_datasets`.
        split: one of ``dataset_info(name).splits`` (e.g. ``"train"``, ``"test"``; for
            ``"cifar10_c"`` a corruption name, or ``"<corruption>-<severity>"``).
        data_dir: folder holding the dataset files (each dataset in its own sub-folder, see
            ``dataset_info(name).layout``); default :func:`default_data_dir`. Ignored by the
            embedded datasets.
        download: fetch missing files first (needs internet; ignored by embedded datasets).
        transform: applied to each image *after* it became a float tensor in [0, 1].

    Returns:
        A ``Dataset`` whose items are ``(image, label)``: image a float tensor ``(C, H, W)`` in
        [0, 1] (``(2,)`` coordinates for the toy sets), label an ``int`` (-1 in OOD-only sets).
        Images are not normalised; see the module docstring. For a regression set
        (``dataset_info(name).task == "regression"``) a
        :class:`~ensemblekit.data.regression.RegressionDataset` of ``(features (F,), targets
        (D,))``, both standardised, with the ``standardization`` that undoes it.

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: the files are missing; the message names the folder searched, the
            layout expected there, and how to download.
    """
    info = dataset_info(name)
    check_choice(f"split of dataset {name!r}", split, info.splits)
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    if transform is not None and not callable(transform):
        raise ValueError(f"transform must be callable or None, got {type(transform).__name__}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a folder path (str or os.PathLike) or None, got "
                        f"{type(data_dir).__name__}")
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return _REGISTRY[name][1](split, root, download, transform)


def missing_data_error(
    info: DatasetInfo, data_dir: Path, *, downloadable: bool = True
) -> Exception:
    """The ``FileNotFoundError`` raised when ``info``'s files are not under ``data_dir``.

    ``info.layout`` may contain ``{data_dir}``; it is shown with the folder actually searched.
    """
    if downloadable:
        how = (
            "To fetch it, run with download=True (CLI: --download) on a machine with internet, "
            "or copy the files there"
        )
    else:
        how = (
            "It cannot be downloaded automatically (download=True / --download does not apply): "
            "obtain it from its publisher and arrange it as shown"
        )
    return FileNotFoundError(
        f"dataset {info.name!r} not found: searched {data_dir / (info.folder or '')}\n"
        f"expected layout:\n{info.layout.replace('{data_dir}', str(data_dir))}\n"
        f"{how}; or pass data_dir (CLI: --data-dir) naming the folder that holds "
        f"{info.folder!r}, or set ${DATA_DIR_ENV}."
    )


def unreadable_data_error(info: DatasetInfo, data_dir: Path, error: Exception) -> ValueError:
    """The ``ValueError`` raised when ``info``'s files are there but cannot be parsed."""
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return ValueError(
        f"dataset {info.name!r} under {data_dir / (info.folder or '')} cannot be read "
        f"({type(error).__name__}: {reason}): a file is truncated or corrupt; replace the "
        "folder with a fresh copy (download=True / --download on a machine with internet)"
    )


def download_error(info: DatasetInfo, error: Exception) -> RuntimeError:
    """The error raised when ``download=True`` fails (usually: no internet on this machine)."""
    return RuntimeError(
        f"downloading dataset {info.name!r} failed ({type(error).__name__}: {error}); this "
        "needs internet access -- download on a machine that has it and copy the folder "
        f"{info.folder!r} into data_dir"
    )

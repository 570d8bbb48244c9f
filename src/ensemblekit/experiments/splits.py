"""What an experiment reads: the training split less its validation part, the test split, the
OOD set and the corrupted test sets, loaded once per experiment.

The corrupted test sets are one shift source for every method and seed: a CIFAR-10-C-layout
folder (each corruption kind at each severity, the whole test set corrupted with seed 0 and
quantised to uint8) generated once per output folder by
:func:`ensemblekit.data.write_corrupted_folder`, or the official release given as
``corrupted_dir``. :func:`ensemblekit.evaluate_model` scores the same images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import data as datasets
from ..atomic import atomic_write_text
from .config import Settings

Log = Callable[[str], None]
#: Datasets larger than this (as float32) are streamed from disk instead of held in memory.
_IN_MEMORY_BYTES = 4 * 2**30


@dataclass
class ExperimentData:
    """Everything a run reads: ``(images, labels)`` tensors (or Datasets when too large).

    ``train`` excludes ``validation``: the fixed part of the training split held out by
    :func:`ensemblekit.data.split_validation` (``(images, labels)``, a ``Subset`` for streamed
    sets, or None when ``validation_fraction`` is 0 or no training split was loaded).
    ``ood`` is None when OOD evaluation is off (``ood_status`` says why: ``"off"`` or
    ``"missing: <reason>"``; ``"ok"`` otherwise). ``shift_folder`` is the CIFAR-10-C-layout
    folder of the corrupted test sets (None without corruptions).
    """

    name: str
    num_classes: int
    in_channels: int
    train: object
    test: object
    ood: torch.Tensor | None
    ood_name: str
    ood_status: str
    shift_folder: Path | None
    corruptions: list[str]
    severities: list[int]
    validation: object = None


def load_experiment_data(
    settings: Settings,
    *,
    ood: str = "none",
    corruptions: list[str] | tuple = (),
    severities: list[int] | tuple = (),
    corrupted_dir: str | None = None,
    with_train: bool = True,
    log: Log = print,
) -> ExperimentData:
    """Load train (unless ``with_train`` is False) and test splits, the OOD set (a missing one
    is reported, not fatal) and the corrupted test sets (generated into ``<out>/corrupted``
    unless ``corrupted_dir`` is given). The training split loses its validation part
    (``settings.validation_fraction``; None: the dataset's default) to ``validation``.
    """
    info = datasets.dataset_info(settings.dataset)
    train = validation = None
    if with_train:
        train = _tensors_or_dataset(
            datasets.load_dataset(settings.dataset, "train", data_dir=settings.data_dir,
                                  download=settings.download))
        fraction = getattr(settings, "validation_fraction", None)
        if fraction is None:
            fraction = datasets.default_validation_fraction(settings.dataset)
        train, validation = datasets.split_validation(train, fraction)
    test = _tensors_or_dataset(
        datasets.load_dataset(settings.dataset, "test", data_dir=settings.data_dir,
                              download=settings.download))
    ood_images, ood_status = None, "off"
    if ood != "none":
        try:
            ood_set = datasets.load_dataset(ood, "test", data_dir=settings.data_dir,
                                            download=settings.download)
        except (FileNotFoundError, RuntimeError) as error:
            reason = str(error).splitlines()[0]
            ood_status = f"missing: {reason}"
            log(f"note: OOD set {ood!r} is not available ({reason}); continuing without OOD "
                "metrics (pass --ood none to skip it, or --data-dir to point at it)")
        else:
            ood_images = datasets.as_tensors(ood_set)[0]
            shape = tuple(_images(test).shape[1:])
            if tuple(ood_images.shape[1:]) != shape:
                raise ValueError(
                    f"OOD set {ood!r} has inputs of shape {tuple(ood_images.shape[1:])}, but "
                    f"{settings.dataset!r} has {shape}; pick an OOD set of the same shape "
                    f"(the registered pair is {info.ood!r})")
            ood_status = "ok"
    shift_folder = None
    if corruptions:
        if corrupted_dir is not None:
            shift_folder = _check_corrupted_folder(Path(corrupted_dir), corruptions, severities)
        else:
            shift_folder = _generate_corrupted(test, Path(settings.out) / "corrupted",
                                               settings.dataset, list(corruptions),
                                               list(severities), log)
    return ExperimentData(
        name=settings.dataset,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        train=train,
        test=test,
        ood=ood_images,
        ood_name=ood,
        ood_status=ood_status,
        shift_folder=shift_folder,
        corruptions=list(corruptions),
        severities=list(severities),
        validation=validation,
    )


def corrupted_set(data: ExperimentData, kind: str, severity: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, ...) float32 in [0, 1], labels (N,))``: the test set under ``kind`` at
    ``severity``, read from ``data.shift_folder`` (row n is test image n)."""
    return datasets.read_corrupted_folder(data.shift_folder, kind, severity).tensors


def _tensors_or_dataset(dataset):
    """In-memory ``(images, labels)`` when the set fits comfortably, else the Dataset."""
    first = dataset[0][0]
    if len(dataset) * torch.as_tensor(first).numel() * 4 > _IN_MEMORY_BYTES:
        return dataset
    return datasets.as_tensors(dataset)


def _images(data) -> torch.Tensor:
    if isinstance(data, tuple):
        return data[0]
    return torch.as_tensor(data[0][0]).unsqueeze(0)


def _generate_corrupted(test, folder: Path, dataset: str, kinds: list[str],
                        severities: list[int], log: Log) -> Path:
    """Write the corrupted test sets once; reuse them while dataset, kinds and severities match."""
    manifest = {"dataset": dataset, "kinds": kinds, "severities": severities, "seed": 0}
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest and all(
            (folder / f"{kind}.npy").is_file() for kind in kinds):
        return folder
    images = test if isinstance(test, tuple) else datasets.as_tensors(test)
    started = time.perf_counter()
    datasets.write_corrupted_folder(images, folder, kinds, severities, seed=0)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    log(f"corrupted test sets: {len(kinds)} kinds x {len(severities)} severities written to "
        f"{folder} ({time.perf_counter() - started:.1f} s)")
    return folder


def _check_corrupted_folder(folder: Path, kinds, severities) -> Path:
    missing = [f"{kind}.npy" for kind in kinds if not (folder / f"{kind}.npy").is_file()]
    if not (folder / "labels.npy").is_file():
        missing.append("labels.npy")
    if missing:
        raise ValueError(f"corrupted_dir {folder} lacks {', '.join(missing)}; point it at a "
                         "CIFAR-10-C-layout folder, or leave it unset to generate the sets")
    return folder

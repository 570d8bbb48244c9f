"""The CIFAR-10-C folder layout: read the official release, and write the same layout for any set.

Layout (one folder): ``<kind>.npy`` of shape ``(5 * N, H, W, C)`` uint8 per corruption, the five
severities stacked in blocks of N (severity 1 first), and ``labels.npy`` with the ``5 * N``
labels (the N test labels repeated). The official CIFAR-10-C has N = 10000, H = W = 32, C = 3 and
all 19 kinds. Folders written here may hold 1-channel images and other sizes, and a
``severities.json`` when they hold other severities than 1..5.

``load_dataset("cifar10_c", split)``: ``split`` is a kind (all severities, 5 * N images) or
``"<kind>-<severity>"`` (one block), e.g. ``"fog-3"``; :func:`corrupted_split` builds it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_choice, check_int
from ..atomic import atomic_write_bytes, atomic_write_text
from .corruption_severities import CORRUPTIONS, SEVERITIES
from .in_memory import InMemoryDataset, as_tensors
from .registry import DatasetInfo, download_error, missing_data_error, register_dataset
from .shifted import corrupt_tensor, quantize
from .vision import CIFAR10_INFO

CIFAR10_C_URL = "https://zenodo.org/record/2535967/files/CIFAR-10-C.tar"
_SEVERITIES_FILE = "severities.json"


def corrupted_split(kind: str, severity: int | None = None) -> str:
    """The ``split`` string for ``load_dataset("cifar10_c", ...)``: ``"fog"`` or ``"fog-3"``."""
    check_choice("corruption kind", kind, CORRUPTIONS)
    if severity is None:
        return kind
    return f"{kind}-{check_int('severity', severity, minimum=1, maximum=5)}"


CIFAR10_C_INFO = DatasetInfo(
    name="cifar10_c",
    num_classes=10,
    in_channels=3,
    image_size=(32, 32),
    mean=CIFAR10_INFO.mean,
    std=CIFAR10_INFO.std,
    splits=tuple(
        [*CORRUPTIONS, *(corrupted_split(kind, s) for kind in CORRUPTIONS for s in SEVERITIES)]
    ),
    ood="svhn",
    folder="CIFAR-10-C",
    layout="""\
  {data_dir}/CIFAR-10-C/
      gaussian_noise.npy, shot_noise.npy, ..., saturate.npy   (50000, 32, 32, 3) uint8 each,
      labels.npy                                                (50000,)
  severities 1..5 stacked in blocks of 10000 (the official CIFAR-10-C release, extracted)""",
    description="CIFAR-10-C: the CIFAR-10 test set under 19 corruptions x 5 severities (.npy)",
)


def read_corrupted_folder(
    root: str | os.PathLike, kind: str, severity: int | None = None, *, transform=None
) -> InMemoryDataset:
    """Images of ``kind`` (one ``severity``, or all stacked) from a CIFAR-10-C-layout folder.

    Returns an :class:`InMemoryDataset` holding uint8 images ``(M, C, H, W)`` (read as floats
    in [0, 1]) and their labels. Raises ``FileNotFoundError`` if a file is missing.
    """
    root = Path(root)
    check_choice("corruption kind", kind, CORRUPTIONS)
    image_path, label_path = root / f"{kind}.npy", root / "labels.npy"
    for path in (image_path, label_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (a CIFAR-10-C-layout folder needs it)")
    images, labels = _load_npy(image_path, mmap_mode="r"), _load_npy(label_path)
    severities = _folder_severities(root)
    if images.shape[0] % len(severities):
        raise ValueError(
            f"{image_path} holds {images.shape[0]} images, not a multiple of its "
            f"{len(severities)} severities"
        )
    block = images.shape[0] // len(severities)
    if labels.shape[0] == block:  # some releases store the N labels once
        labels = np.tile(labels, len(severities))
    if severity is not None:
        if severity not in severities:
            raise ValueError(f"severity {severity} is not in {root} (it holds {severities})")
        start = severities.index(severity) * block
        images, labels = images[start : start + block], labels[start : start + block]
    pixels = torch.from_numpy(np.array(images))  # copies the slice out of the memory map
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    return InMemoryDataset(
        pixels.contiguous(), torch.from_numpy(labels.astype(np.int64)), transform=transform
    )


def _load_npy(path: Path, **options) -> np.ndarray:
    try:
        return np.load(path, **options)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"{path} cannot be read as a .npy array ({error}); it is truncated or corrupt: "
            "write the folder again (ensemblekit corrupt) or replace it with a fresh copy"
        ) from error


def write_corrupted_folder(
    dataset: Dataset | tuple[torch.Tensor, torch.Tensor],
    out_dir: str | os.PathLike,
    kinds: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    *,
    seed: int = 0,
    progress=None,
) -> Path:
    """Write ``dataset`` corrupted in the CIFAR-10-C layout under ``out_dir``; return the folder.

    ``dataset``: ``(image in [0, 1], label)`` items or an ``(images, labels)`` pair. Each
    ``<kind>.npy`` is ``(len(severities) * N, H, W, C)`` uint8, plus ``labels.npy``; files are
    written atomically. ``progress``, if given, is called with each kind when it is done.
    Deterministic for a given ``seed`` (same images as ``make_corrupted(..., seed=seed)``).
    """
    kinds = [check_choice("corruption kind", kind, CORRUPTIONS) for kind in kinds]
    severities = [check_int("severity", s, minimum=1, maximum=5) for s in severities]
    if not severities:
        raise ValueError("severities must not be empty")
    images, labels = dataset if isinstance(dataset, tuple) else as_tensors(dataset)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    out_dir = Path(out_dir)
    for kind in kinds:
        blocks = [corrupt_tensor(images, kind, s, seed=seed) for s in severities]
        pixels = quantize(torch.cat(blocks)).permute(0, 2, 3, 1)
        _save_npy(out_dir / f"{kind}.npy", pixels.contiguous().numpy())
        if progress is not None:
            progress(kind)
    label_dtype = np.uint8 if labels.min() >= 0 and labels.max() < 256 else np.int64
    _save_npy(out_dir / "labels.npy", np.tile(labels.numpy().astype(label_dtype), len(severities)))
    if severities != list(SEVERITIES):
        atomic_write_text(out_dir / _SEVERITIES_FILE, json.dumps(severities))
    elif (out_dir / _SEVERITIES_FILE).exists():
        (out_dir / _SEVERITIES_FILE).unlink()
    return out_dir


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _folder_severities(root: Path) -> list[int]:
    path = root / _SEVERITIES_FILE
    return json.loads(path.read_text()) if path.is_file() else list(SEVERITIES)


@register_dataset(CIFAR10_C_INFO)
def load_cifar10_c(split: str, data_dir: Path, download: bool, transform) -> InMemoryDataset:
    """CIFAR-10-C ``split`` (``"<kind>"`` or ``"<kind>-<severity>"``) from its folder."""
    root = data_dir / CIFAR10_C_INFO.folder
    kind, _, severity = split.partition("-")
    if download and not (root / f"{kind}.npy").is_file():
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(CIFAR10_C_URL, str(data_dir), filename="CIFAR-10-C.tar")
        except OSError as error:
            raise download_error(CIFAR10_C_INFO, error) from error
    try:
        return read_corrupted_folder(
            root, kind, int(severity) if severity else None, transform=transform
        )
    except FileNotFoundError:
        raise missing_data_error(CIFAR10_C_INFO, data_dir) from None

"""Shifted test sets: any image dataset corrupted at every requested kind and severity.

``make_corrupted(dataset, kinds, severities)`` returns a lazy mapping
``{(kind, severity): InMemoryDataset}``: each set is computed when looked up (not kept), so the
full CIFAR-10 grid (19 x 5 sets of 10000 images) never sits in memory at once. Every set is
deterministic: the seed of each chunk of images derives from ``(seed, kind, severity, chunk)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_choice, check_int, check_seed
from .batches import rebatch
from .corruption_severities import CORRUPTIONS, SEVERITIES
from .corruptions import corrupt
from .in_memory import InMemoryDataset, _as_float, as_tensors

#: Images corrupted per call: bounds peak memory, and fixes the chunking that seeds depend on.
CORRUPTION_CHUNK = 500


def corrupt_tensor(
    images: torch.Tensor, kind: str, severity: int, *, seed: int = 0
) -> torch.Tensor:
    """:func:`corrupt` over any number of images, chunk by chunk, with per-chunk derived seeds.

    The result depends only on ``(images, kind, severity, seed)``.
    """
    kind_index = CORRUPTIONS.index(check_choice("corruption kind", kind, CORRUPTIONS))
    chunks = []
    for chunk_index, start in enumerate(range(0, images.shape[0], CORRUPTION_CHUNK)):
        chunk_seed = derived_seed(seed, kind_index, severity, chunk_index)
        chunks.append(
            corrupt(images[start : start + CORRUPTION_CHUNK], kind, severity, seed=chunk_seed)
        )
    return torch.cat(chunks) if chunks else images.clone()


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images as the uint8 pixels a corrupted folder stores: ``round(255 x)``."""
    return (images * 255).round().to(torch.uint8)


def corrupted_batches(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], kind: str, severity: int, *,
    seed: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The images ``write_corrupted_folder(..., seed=seed)`` stores for ``kind`` at ``severity``,
    streamed from clean ``(images in [0, 1], labels)`` batches of any size.

    The clean rows are re-chunked to :data:`CORRUPTION_CHUNK` rows, each chunk corrupted with
    its own derived seed (as :func:`corrupt_tensor`), quantised to uint8 (:func:`quantize`) and
    read back as float32 in [0, 1] (as :func:`~ensemblekit.data.read_corrupted_folder` returns
    them): the same images whatever the batching, and never the whole set in memory. Yields
    ``(images (B, C, H, W) float32 on the CPU, labels (B,))`` chunks of CORRUPTION_CHUNK rows.
    """
    kind_index = CORRUPTIONS.index(check_choice("corruption kind", kind, CORRUPTIONS))
    severity = check_int("severity", severity, minimum=1, maximum=5)
    seed = check_seed(seed)
    for chunk_index, (images, labels) in enumerate(rebatch(batches, CORRUPTION_CHUNK)):
        chunk_seed = derived_seed(seed, kind_index, severity, chunk_index)
        shifted = corrupt(images.cpu(), kind, severity, seed=chunk_seed)
        yield _as_float(quantize(shifted)), labels


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (NumPy's ``SeedSequence``)."""
    return int(
        np.random.SeedSequence([int(part) for part in parts]).generate_state(2, np.uint64)[0]
        >> np.uint64(1)
    )


class CorruptedSets(Mapping):
    """``{(kind, severity): InMemoryDataset}`` computed on lookup from clean images in [0, 1]."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        kinds: Sequence[str],
        severities: Sequence[int],
        seed: int,
    ) -> None:
        self.images, self.labels, self.seed = images, labels, seed
        self._keys = [(kind, severity) for kind in kinds for severity in severities]

    def __getitem__(self, key: tuple[str, int]) -> InMemoryDataset:
        if key not in self._keys:
            raise KeyError(f"{key!r} is not one of the corrupted sets; keys are (kind, severity)")
        kind, severity = key
        shifted = corrupt_tensor(self.images, kind, severity, seed=self.seed)
        return InMemoryDataset(shifted, self.labels)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def make_corrupted(
    dataset: Dataset | tuple[torch.Tensor, torch.Tensor],
    kinds: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    *,
    seed: int = 0,
) -> CorruptedSets:
    """The shifted test sets of an image dataset, for every kind in ``kinds`` x ``severities``.

    Args:
        dataset: a dataset of ``(image in [0, 1], label)`` (e.g. from ``load_dataset``) or an
            ``(images (N, C, H, W), labels (N,))`` pair.
        kinds: corruption names (default: all 19 in :data:`CORRUPTIONS`).
        severities: integers in 1..5 (default: all).
        seed: base seed; each set is reproducible from it.

    Returns:
        A lazy mapping ``{(kind, severity): InMemoryDataset}`` (see the module docstring).
    """
    kinds = [check_choice("corruption kind", kind, CORRUPTIONS) for kind in kinds]
    severities = [check_int("severity", severity, minimum=1, maximum=5) for severity in severities]
    seed = check_seed(seed)
    images, labels = dataset if isinstance(dataset, tuple) else as_tensors(dataset)
    if images.ndim != 4:
        raise ValueError(
            f"corruptions apply to image datasets (N, C, H, W); got inputs of shape "
            f"{tuple(images.shape)} (the toy sets use far-away points as their shift instead)"
        )
    return CorruptedSets(images, labels, kinds, severities, seed)

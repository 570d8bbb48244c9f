"""Re-batching a stream of ``(images, labels)`` chunks into batches of a fixed size."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .._validation import check_int


def rebatch(chunks: Iterable[tuple[torch.Tensor, torch.Tensor]], size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` chunks of any sizes as batches of ``size`` rows, in order (the last
    one shorter if the rows run out): ``(B, ...)`` images and ``(B,)`` labels."""
    size = check_int("size", size, minimum=1)
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    held = 0
    for chunk_images, chunk_labels in chunks:
        images.append(chunk_images)
        labels.append(torch.as_tensor(chunk_labels))
        held += len(chunk_images)
        while held >= size:
            stacked_images, stacked_labels = torch.cat(images), torch.cat(labels)
            yield stacked_images[:size], stacked_labels[:size]
            images, labels = [stacked_images[size:]], [stacked_labels[size:]]
            held -= size
    if held:
        yield torch.cat(images), torch.cat(labels)

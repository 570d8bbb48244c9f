"""A picture of what the corruptions do: one image, kinds as rows, clean + severities as columns.

Also :func:`example_scene`, a smooth synthetic CIFAR-like photo (sky, sun, hills, a house) for
previews and tests on a machine with no CIFAR files.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from .._validation import check_int, check_tensor
from ..atomic import atomic_write_bytes
from ._image_ops import luminance
from .corruption_severities import CORRUPTIONS, SEVERITIES
from .shifted import corrupt_tensor


def corruption_grid(
    image: torch.Tensor,
    kinds: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """``(kinds, 1 + severities, C, H, W)``: per kind, the clean image then each severity."""
    check_tensor("image", image, ndim=3)
    kinds, severities = list(kinds), list(severities)
    rows = []
    for kind in kinds:
        shifted = [corrupt_tensor(image.unsqueeze(0), kind, s, seed=seed)[0] for s in severities]
        rows.append(torch.stack([image.float(), *shifted]))
    return torch.stack(rows)


def save_corruption_preview(
    images: torch.Tensor,
    path: str | os.PathLike,
    kinds: Iterable[str] = CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    *,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Render the kind x severity grid of the first image of ``images`` to a PNG at ``path``.

    ``images``: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1] (C = 1 or 3). Pixels are drawn
    as blocks (no smoothing), so an 8x8 digit shows its real resolution. Written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_tensor("images", images, ndim=(3, 4))
    image = images[0] if images.ndim == 4 else images
    kinds, severities = list(kinds), list(severities)
    grid = corruption_grid(image, kinds, severities, seed=seed)
    columns = ["clean", *(f"severity {s}" for s in severities)]
    cell = 1.1
    figure = Figure(
        figsize=(cell * len(columns) + 1.6, cell * len(kinds) + 0.8), dpi=100, layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(kinds), len(columns), squeeze=False)
    for row, kind in enumerate(kinds):
        for col, name in enumerate(columns):
            axis = axes[row][col]
            picture = grid[row, col].permute(1, 2, 0).clamp(0, 1).cpu().numpy()
            if picture.shape[-1] == 1:
                axis.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=8)
            if col == 0:
                axis.set_ylabel(
                    kind.replace("_", " "), fontsize=8, rotation=0, ha="right", va="center"
                )
    if title:
        figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def example_scene(size: int = 32, *, channels: int = 3) -> torch.Tensor:
    """A smooth synthetic photo ``(channels, size, size)`` in [0, 1]: sky gradient, sun, two
    hills, a red house with a dark door, in the muted colours of real photos (saturation
    0.2 .. 0.6). Deterministic; 1 channel gives its luma."""
    size = check_int("size", size, minimum=4)
    channels = check_int("channels", channels, minimum=1, maximum=3)
    if channels == 2:
        raise ValueError("channels must be 1 or 3, got 2")
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")

    def paint(scene, mask, rgb):
        colour = torch.tensor(rgb).view(3, 1, 1)
        return scene * (1 - mask) + colour * mask

    def soft(distance):  # anti-aliased edge one pixel wide
        return (0.5 - distance * size).clamp(-0.5, 0.5) + 0.5

    sky = torch.stack([0.5 + 0.3 * y, 0.65 + 0.25 * y, 0.9 - 0.05 * y])
    scene = paint(sky, soft(((x - 0.78) ** 2 + (y - 0.2) ** 2).sqrt() - 0.1), (0.98, 0.88, 0.55))
    far_hill = 0.62 + 0.08 * torch.sin(2 * math.pi * x * 1.3 + 0.5)
    scene = paint(scene, soft(far_hill - y), (0.38, 0.52, 0.4))
    near_hill = 0.75 + 0.06 * torch.cos(2 * math.pi * x * 0.8)
    scene = paint(scene, soft(near_hill - y), (0.4, 0.6, 0.3))
    walls = torch.minimum(soft((x - 0.34).abs() - 0.13), soft((y - 0.66).abs() - 0.1))
    scene = paint(scene, walls, (0.7, 0.35, 0.28))
    roof = soft(y - 0.56) * soft((x - 0.34).abs() - (y - 0.42) * 0.17 / 0.14)
    scene = paint(scene, roof, (0.45, 0.28, 0.22))
    door = torch.minimum(soft((x - 0.34).abs() - 0.035), soft((y - 0.7).abs() - 0.06))
    scene = paint(scene, door, (0.25, 0.18, 0.12))
    scene = scene.clamp(0, 1)
    return luminance(scene.unsqueeze(0))[0] if channels == 1 else scene

"""Generated 2D classification problems, their far-away OOD points, and a grid for uncertainty maps.

``toy_moons`` (two interleaving half circles, 2 classes) and ``toy_blobs`` (three Gaussian
clusters, 3 classes). Items are ``(point (2,), label)``: raw coordinates, no normalisation.
Every split is generated from its own fixed seed, so a name and split always give the same points.

The OOD sets ``toy_moons_far`` / ``toy_blobs_far`` are points in a ring well outside the data:
distances from the data's centre between 1.5 and 3 times the largest distance of a training
point, uniform in angle. A model that is certain there is extrapolating.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .._validation import check_float, check_int
from .in_memory import InMemoryDataset
from .registry import DatasetInfo, dataset_info, register_dataset

TOY_SPLIT_SEEDS = {"train": 0, "test": 1}
TOY_SPLIT_SIZES = {"train": 1000, "test": 1000}
MOONS_NOISE = 0.1
#: Blob centres on a circle of radius 2.5 (at 90, 210 and 330 degrees), unit standard deviation:
#: neighbouring blobs overlap a little, so there is aleatoric uncertainty between them.
BLOB_CENTRES = tuple(
    (2.5 * math.cos(math.radians(angle)), 2.5 * math.sin(math.radians(angle)))
    for angle in (90.0, 210.0, 330.0)
)
BLOB_STD = 1.0
FAR_RADII = (1.5, 3.0)  # OOD ring, in multiples of the data's radius


def make_moons(
    n: int, *, noise: float = MOONS_NOISE, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles: ``(points (n, 2) float32, labels (n,) int64)`` in {0, 1}."""
    from sklearn.datasets import make_moons as sklearn_moons

    n = check_int("n", n, minimum=2)
    noise = check_float("noise", noise, minimum=0.0)
    points, labels = sklearn_moons(n, noise=noise, random_state=seed)
    return torch.from_numpy(points).float(), torch.from_numpy(labels).long()


def make_blobs(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters at :data:`BLOB_CENTRES`: ``(points (n, 2), labels (n,))``."""
    from sklearn.datasets import make_blobs as sklearn_blobs

    n = check_int("n", n, minimum=3)
    points, labels = sklearn_blobs(
        n, centers=np.asarray(BLOB_CENTRES), cluster_std=BLOB_STD, random_state=seed
    )
    return torch.from_numpy(points).float(), torch.from_numpy(labels).long()


def far_points(reference: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` points ``(n, 2)`` in a ring around ``reference`` (``(N, 2)``), far outside it.

    Radius uniform in ``FAR_RADII`` times the largest distance of a reference point from the
    reference's mean; angle uniform.
    """
    n = check_int("n", n, minimum=1)
    centre = reference.double().mean(dim=0)
    radius = float((reference.double() - centre).norm(dim=1).max())
    rng = np.random.default_rng(seed)
    distance = radius * rng.uniform(*FAR_RADII, size=n)
    angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=1) * distance[:, None]
    return (torch.from_numpy(ring) + centre).float()


class ToyGrid(NamedTuple):
    """A regular grid over the plane, for plotting a quantity (e.g. predictive entropy).

    ``points`` is ``(resolution**2, 2)`` in row-major order of ``(ys, xs)``: reshape a per-point
    value ``v`` of shape ``(resolution**2,)`` with ``v.reshape(resolution, resolution)`` and plot
    it against ``xs`` (columns) and ``ys`` (rows).
    """

    points: torch.Tensor
    xs: torch.Tensor
    ys: torch.Tensor


def toy_grid(name: str, resolution: int = 100, *, margin: float = 1.0) -> ToyGrid:
    """A grid covering toy dataset ``name``'s training points, widened by ``margin`` x their extent.

    ``margin=1.0`` extends the box by its own width on every side, so the map shows what the
    model does far from the data too.
    """
    resolution = check_int("resolution", resolution, minimum=2)
    margin = check_float("margin", margin, minimum=0.0)
    points, _ = _toy_arrays(_toy_base_name(name), "train")
    low, high = points.min(dim=0).values, points.max(dim=0).values
    extent = high - low
    low, high = low - margin * extent, high + margin * extent
    xs = torch.linspace(float(low[0]), float(high[0]), resolution)
    ys = torch.linspace(float(low[1]), float(high[1]), resolution)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return ToyGrid(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1), xs, ys)


_GENERATORS = {
    "toy_moons": lambda n, seed: make_moons(n, seed=seed),
    "toy_blobs": lambda n, seed: make_blobs(n, seed=seed),
}


@lru_cache(maxsize=8)
def _toy_arrays(name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _GENERATORS[name](TOY_SPLIT_SIZES[split], TOY_SPLIT_SEEDS[split])


def _toy_base_name(name: str) -> str:
    info = dataset_info(name)  # raises a clear error for an unknown name
    base = info.name.removesuffix("_far")
    if base not in _GENERATORS:
        raise ValueError(f"{name!r} is not a toy dataset; toy datasets: {', '.join(_GENERATORS)}")
    return base


def _register_toy(name: str, num_classes: int, description: str) -> None:
    common = dict(in_channels=2, image_size=None, mean=(0.0, 0.0), std=(1.0, 1.0), embedded=True)
    info = DatasetInfo(
        name=name,
        num_classes=num_classes,
        splits=("train", "test"),
        ood=f"{name}_far",
        description=description,
        **common,
    )

    @register_dataset(info)
    def load_toy(split: str, data_dir: Path, download: bool, transform) -> InMemoryDataset:
        points, labels = _toy_arrays(name, split)
        return InMemoryDataset(points.clone(), labels.clone(), transform=transform)

    far_info = DatasetInfo(
        name=f"{name}_far",
        num_classes=0,
        splits=("test",),
        description=f"points far from {name} (its OOD set)",
        **common,
    )

    @register_dataset(far_info)
    def load_far(split: str, data_dir: Path, download: bool, transform) -> InMemoryDataset:
        reference, _ = _toy_arrays(name, "train")
        points = far_points(reference, TOY_SPLIT_SIZES["test"], seed=TOY_SPLIT_SEEDS["test"])
        labels = torch.full((points.shape[0],), -1, dtype=torch.long)
        return InMemoryDataset(points, labels, transform=transform)


_register_toy("toy_moons", 2, "two interleaving half circles in 2D (generated, 2 classes)")
_register_toy("toy_blobs", 3, "three overlapping Gaussian clusters in 2D (generated, 3 classes)")

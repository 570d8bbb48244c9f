"""Generated 1-D regression problems: the cubic, the "in-between" gap and a heteroscedastic sine.

Each is ``y = f(x) + noise_std(x) * e``, ``e ~ N(0, 1)``, with x drawn uniformly from the
training intervals; the test split draws x from a wider range, so it holds points where the
model has seen no data. Every split comes from its own fixed seed (train 0, test 1), so a name
and split always give the same points. Loaded like every regression set (see
:mod:`ensemblekit.data.regression`): features (N, 1) and targets (N, 1), standardised with the
training part's statistics.

- ``toy_cubic`` (Hernandez-Lobato & Adams 2015; Deep Ensembles sec. 3.2): ``y = x^3 + e``,
  ``e ~ N(0, 3^2)``; 20 training points from U[-4, 4]; 200 test points from U[-6, 6].
- ``toy_in_between`` (Foong et al. 2019): ``y = cos(4x + 0.8) + N(0, 0.1^2)``; 50 training
  points from U[-1, -0.7] and 50 from U[0.5, 1]; 200 test points from U[-2, 2]. A model's
  epistemic uncertainty should grow in the gap between the two clusters, not only outside.
- ``toy_hetero_sine`` (Detlefsen et al. 2019, chosen over Seitzer et al.'s sine because its
  noise really depends on x): ``y = x sin x + 0.3 e1 + 0.3 x e2``, i.e. noise std
  ``0.3 sqrt(1 + x^2)``; 500 training and 500 test points from U(0, 10). The aleatoric
  variance a model learns should grow with x.

``REGRESSION_TOYS`` holds each problem's true mean and noise std (for plotting the truth beside
a model) and its sampling ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .registry import register_dataset
from .regression import RegressionDataset, regression_info, standardized_split
from .toy import TOY_SPLIT_SEEDS


@dataclass(frozen=True)
class RegressionToy:
    """One generated problem: ``y = mean(x) + noise_std(x) * N(0, 1)``, x uniform on the
    union of ``train_ranges`` (equal counts per range) or on ``test_range``."""

    mean: Callable[[np.ndarray], np.ndarray]
    noise_std: Callable[[np.ndarray], np.ndarray]
    train_ranges: tuple[tuple[float, float], ...]
    n_train: int
    test_range: tuple[float, float]
    n_test: int
    description: str


REGRESSION_TOYS = {
    "toy_cubic": RegressionToy(
        mean=lambda x: x**3, noise_std=lambda x: np.full_like(x, 3.0),
        train_ranges=((-4.0, 4.0),), n_train=20, test_range=(-6.0, 6.0), n_test=200,
        description="y = x^3 + N(0, 3^2): 20 points on [-4, 4], test on [-6, 6] (generated)"),
    "toy_in_between": RegressionToy(
        mean=lambda x: np.cos(4 * x + 0.8), noise_std=lambda x: np.full_like(x, 0.1),
        train_ranges=((-1.0, -0.7), (0.5, 1.0)), n_train=100, test_range=(-2.0, 2.0),
        n_test=200,
        description="cos(4x + 0.8) + N(0, 0.1^2): two clusters and a gap (Foong et al. 2019)"),
    "toy_hetero_sine": RegressionToy(
        mean=lambda x: x * np.sin(x), noise_std=lambda x: 0.3 * np.sqrt(1 + x**2),
        train_ranges=((0.0, 10.0),), n_train=500, test_range=(0.0, 10.0), n_test=500,
        description="x sin x + 0.3 e1 + 0.3 x e2 on [0, 10]: noise grows with x (Detlefsen)"),
}


def make_regression_toy(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(x (N, 1), y (N, 1))`` float64 of toy ``name``'s ``split`` ("train" or "test"),
    not standardised: the same numbers on every call."""
    toy = REGRESSION_TOYS[name]
    rng = np.random.default_rng(TOY_SPLIT_SEEDS[split])
    if split == "train":
        per_range = toy.n_train // len(toy.train_ranges)
        x = np.concatenate([rng.uniform(low, high, per_range) for low, high in toy.train_ranges])
    else:
        x = rng.uniform(*toy.test_range, toy.n_test)
    y = toy.mean(x) + toy.noise_std(x) * rng.standard_normal(x.shape)
    return x[:, None], y[:, None]


@lru_cache(maxsize=8)
def _toy_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    return make_regression_toy(name, split)


def _register(name: str, toy: RegressionToy) -> None:
    info = regression_info(name, 1, embedded=True, description=toy.description)

    @register_dataset(info)
    def load_toy(split: str, data_dir: Path, download: bool, transform) -> RegressionDataset:
        return standardized_split(_toy_split(name, "train"), _toy_split(name, "test"),
                                  info=info, part=split, transform=transform)


for _name, _toy in REGRESSION_TOYS.items():
    _register(_name, _toy)

"""The embedded real regression set: scikit-learn's diabetes data (Efron et al. 2004; offline).

442 patients, 10 baseline features (age, sex, body mass index, blood pressure and six blood
serum measurements), target: a quantitative measure of disease progression one year later
(25 to 346). Read unscaled (``load_diabetes(scaled=False)``), split once with a fixed seed --
a ``numpy.random.default_rng(0)`` permutation's first 20 % (88 patients) are the test split, the
other 354 the training split -- and standardised with the training split's statistics (see
:mod:`ensemblekit.data.regression`). A fifth rather than the UCI protocol's tenth, so that the
test metrics rest on 88 points, not 44.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .registry import register_dataset
from .regression import RegressionDataset, regression_info, standardized_split

DIABETES_SPLIT_SEED = 0
DIABETES_TEST_FRACTION = 0.2

DIABETES_INFO = regression_info(
    "diabetes", 10, embedded=True,
    description="scikit-learn's diabetes: 442 patients x 10 features, disease progression "
                "(embedded; 354 train / 88 test)",
)


@register_dataset(DIABETES_INFO)
def load_diabetes_dataset(split: str, data_dir: Path, download: bool,
                          transform) -> RegressionDataset:
    """Split ``"train"`` or ``"test"``: features (N, 10), targets (N, 1), standardised."""
    train, test = _diabetes_split()
    return standardized_split(train, test, info=DIABETES_INFO, part=split, transform=transform)


@lru_cache(maxsize=1)
def _diabetes_split() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes

    features, target = load_diabetes(return_X_y=True, scaled=False)
    order = np.random.default_rng(DIABETES_SPLIT_SEED).permutation(len(target))
    n_test = int(round(DIABETES_TEST_FRACTION * len(target)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    target = target[:, None].astype(np.float64)
    return (features[train], target[train]), (features[test], target[test])

"""Regression datasets: standardised features and targets, and the statistics that undo it.

Every regression set (``dataset_info(name).task == "regression"``) loads as a
:class:`RegressionDataset`: features ``(N, F)`` and targets ``(N, D)``, float32, both
standardised with the statistics of the TRAINING part of the same split (the UCI protocol of
Hernandez-Lobato & Adams 2015, used for every regression set here: the test part is
standardised with the training part's statistics, never its own). Train on the standardised
values; report metrics in the original units by mapping the predictions back::

    test = load_dataset("diabetes", "test")
    x, y = as_tensors(test)                                    # (N, 10), (N, 1) standardised
    members = ...                                              # GaussianMembers of x
    units = test.standardization                               # the training part's statistics
    evaluate_regression(*units.to_original(*members), units.original_targets(y))

Statistics are means and POPULATION standard deviations (``numpy.std``, ddof = 0, as the UCI
release's code); a feature constant on the training part (e.g. two of naval's) keeps a std of
1, so it is centred only (the release's rule, applied to min == max rather than to a computed
std of 0, which rounding can miss). A regression set's ``DatasetInfo`` has ``mean`` 0 and ``std`` 1
per feature: the loader has standardised already, so :func:`~ensemblekit.data.normalize` is the
identity on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..members import GaussianMembers
from .registry import DatasetInfo


class Standardization(NamedTuple):
    """Per-column means and standard deviations of a training part, float64:
    ``input_mean``, ``input_std`` (F,) and ``target_mean``, ``target_std`` (D,)."""

    input_mean: torch.Tensor
    input_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    @classmethod
    def fit(cls, inputs, targets) -> Standardization:
        """The statistics of training ``inputs`` (N, F) and ``targets`` (N, D) (module
        docstring: population std, 1 where a column is constant)."""
        inputs, targets = _float64(inputs), _float64(targets)
        return cls(*_mean_std(inputs), *_mean_std(targets))

    def inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw features (..., F) -> standardised, float32 (e.g. a plotting grid)."""
        return ((_float64(raw) - self.input_mean) / self.input_std).float()

    def targets(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw targets (..., D) -> standardised, float32."""
        return ((_float64(raw) - self.target_mean) / self.target_std).float()

    def original_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Standardised targets or means (..., D) -> the original units, float64."""
        return _float64(targets) * self.target_std + self.target_mean

    def original_variances(self, variances: torch.Tensor) -> torch.Tensor:
        """Variances (..., D) in standardised units -> the original units (times std^2)."""
        return _float64(variances) * self.target_std.square()

    def to_original(self, means: torch.Tensor, variances: torch.Tensor) -> GaussianMembers:
        """Member (or one model's) means and variances (..., D), standardised -> a
        ``GaussianMembers`` pair in the targets' original units, float64. NLL rises by
        ``sum_d log(target_std_d)`` and RMSE, CRPS and interval widths scale by the std."""
        return GaussianMembers(self.original_targets(means), self.original_variances(variances))


class RegressionDataset(Dataset):
    """``(features (F,), targets (D,))`` pairs held as two float32 tensors, standardised.

    Args:
        inputs: (N, F) standardised features; targets: (N, D) standardised targets.
        standardization: the training part's :class:`Standardization` (undoes both).
        transform: optional callable applied to each feature vector when indexed.
        info: the set's ``DatasetInfo`` (name, task...), or None.
        protocol: dataset-specific facts for the protocol (UCI: ``UCIProtocol``), or None.

    ``dataset.tensors`` is ``(inputs, targets)``, so :func:`~ensemblekit.data.as_tensors` and
    ``split_validation`` take it without reading item by item.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor,
                 standardization: Standardization, *, transform: Callable | None = None,
                 info: DatasetInfo | None = None, protocol=None) -> None:
        if inputs.ndim != 2 or targets.ndim != 2 or inputs.shape[0] != targets.shape[0]:
            raise ValueError(f"inputs and targets must be (N, F) and (N, D) with one N, got "
                             f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
        self.inputs = inputs.float()
        self.targets = targets.float()
        self.standardization = standardization
        self.transform = transform
        self.info = info
        self.protocol = protocol

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (N, F), targets (N, D))``, float32, standardised, before ``transform``."""
        return self.inputs, self.targets

    def __len__(self) -> int:
        return self.targets.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.inputs[index]
        if self.transform is not None:
            features = self.transform(features)
        return features, self.targets[index]


def standardized_split(train: tuple, test: tuple, *, info: DatasetInfo, part: str,
                       transform: Callable | None = None, protocol=None) -> RegressionDataset:
    """Part ``part`` ("train" or "test") of a raw split, standardised on its training part.

    train, test: raw ``(inputs (N, F), targets (N, D))`` arrays or tensors.
    """
    statistics = Standardization.fit(*train)
    inputs, targets = train if part == "train" else test
    return RegressionDataset(statistics.inputs(_float64(inputs)),
                             statistics.targets(_float64(targets)), statistics,
                             transform=transform, info=info, protocol=protocol)


def regression_info(name: str, num_features: int, *, splits: tuple[str, ...] = ("train", "test"),
                    num_outputs: int = 1, **fields) -> DatasetInfo:
    """The ``DatasetInfo`` of a regression set: no classes, ``num_features`` inputs (as
    ``in_channels``; mean 0 and std 1 each, already standardised) and ``num_outputs`` targets."""
    return DatasetInfo(name=name, num_classes=0, in_channels=num_features, image_size=None,
                       mean=(0.0,) * num_features, std=(1.0,) * num_features, splits=splits,
                       task="regression", num_outputs=num_outputs, **fields)


def _mean_std(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Constant columns are found by min == max, not by std == 0: the std of a constant column
    # can round to 1e-13 (numpy does on naval), and dividing by it turns 0 into +-1.
    constant = values.amin(0) == values.amax(0)
    std = values.std(0, correction=0)
    return values.mean(0), torch.where(constant, torch.ones_like(std), std)


def _float64(values) -> torch.Tensor:
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    return torch.as_tensor(values).to(torch.float64)

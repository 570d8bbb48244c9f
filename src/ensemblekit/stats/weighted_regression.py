"""The regression benchmark's metrics on weighted input sets: every bootstrap replicate at once.

Each is a :class:`~ensemblekit.stats.bootstrap.Metric` over the per-input values of
:func:`ensemblekit.metrics.regression_per_sample` (one run's values: a dict of tensors with
first dimension N); ``labels`` are unused (any (N,)). Unit weights give
:func:`~ensemblekit.metrics.evaluate_regression`'s numbers: NLL and CRPS are weighted means
of per-input values, RMSE the square root of the weighted mean squared error, and the
calibration error the mean over levels ``p_j`` of ``|p_j - weighted fraction of PIT values
<= p_j|`` (each input's D outputs sharing its weight).
"""

from __future__ import annotations

import torch

from ..metrics import CALIBRATION_LEVELS
from .bootstrap import Metric


def _mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return weights @ values.double() / weights.sum(1)


def _nll(values, labels, weights):
    return _mean(values["nll"], weights)


def _rmse(values, labels, weights):
    return _mean(values["squared_error"], weights).sqrt()


def _crps(values, labels, weights):
    return _mean(values["crps"], weights)


def _calibration_error(values, labels, weights):
    pit = values["pit"].double()
    levels = torch.tensor(CALIBRATION_LEVELS, dtype=torch.float64)
    below = (pit.unsqueeze(-1) <= levels).double().mean(1)  # (N, L): share of the D outputs
    observed = weights @ below / weights.sum(1, keepdim=True)  # (B, L)
    return (levels - observed).abs().mean(1)


REGRESSION_NLL = Metric("nll", False, _nll)
REGRESSION_RMSE = Metric("rmse", False, _rmse)
REGRESSION_CRPS = Metric("crps", False, _crps)
CALIBRATION_ERROR = Metric("calibration_error", False, _calibration_error)
#: The metrics the regression claims are tested on, by name.
REGRESSION_CLAIM_METRICS = {"rmse": REGRESSION_RMSE, "nll": REGRESSION_NLL,
                            "crps": REGRESSION_CRPS, "calibration_error": CALIBRATION_ERROR}

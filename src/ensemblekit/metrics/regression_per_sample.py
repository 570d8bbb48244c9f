"""Per-input values of the regression metrics, for the paired bootstrap and for figures.

The benchmark's verdicts resample test inputs: each replicate needs every metric as a function
of per-input values and weights (:mod:`ensemblekit.stats.weighted_regression`). These are the
values, computed by the same private kernels as :func:`~ensemblekit.metrics.evaluate_regression`
so that unit weights give its numbers:

- ``"nll"`` (N,): the mixture's negative log-likelihood of input n, summed over its D outputs
  (its mean over inputs is ``evaluate_regression``'s ``"nll"``);
- ``"squared_error"`` (N,): ``mean_d (y - mu)^2`` of the moment-matched mean (RMSE = the square
  root of its mean);
- ``"crps"`` (N,): the mixture CRPS averaged over the D outputs (``"crps"``);
- ``"pit"`` (N, D): ``Phi((y - mu) / sigma)`` of the moment-matched Gaussian, whose empirical
  distribution gives the quantile calibration curve and error (``"calibration_error"``).

And :func:`sigma_error_bins`: the binned RMSE against the root mean predicted variance (the
reliability diagram of a regression model, the bins of the ENCE).
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_int
from ._inputs import check_gaussian_members, check_targets
from .gaussian import _mixture_log_prob, _moments, _normal_cdf
from .regression import _mixture_crps
from .regression_calibration import ENCE_BINNINGS, _sigma_bins

#: The per-input values :func:`regression_per_sample` returns.
PER_SAMPLE_KEYS = ("nll", "squared_error", "crps", "pit")


def regression_per_sample(member_means: torch.Tensor, member_vars: torch.Tensor,
                          targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Member means and variances (M, N, D), targets (N, D) (or (N,) for D = 1) -> the
    per-input values of the module docstring, float64 on the CPU."""
    means, variances = check_gaussian_members(member_means, member_vars)
    targets = check_targets("targets", targets, shape=means.shape[1:]).to(means.device)
    moments = _moments(means, variances)
    errors = targets - moments.mean
    values = {
        "nll": -_mixture_log_prob(means, variances, targets),
        "squared_error": errors.square().mean(1),
        "crps": _mixture_crps(means, variances, targets).mean(1),
        "pit": _normal_cdf(errors / moments.variance.sqrt()),
    }
    return {key: value.cpu() for key, value in values.items()}


def sigma_error_bins(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, *,
                     n_bins: int = 10, binning: str = "equal_mass") -> dict[str, list]:
    """Inputs binned by predicted sigma (as ``ence``'s bins, all outputs pooled): per
    non-empty bin the root mean variance ``"rmv"``, the ``"rmse"`` of its errors and its
    ``"count"``. A calibrated model lies on rmse = rmv.

    mean, var: (N, D) or (N,) of one Gaussian per output (an ensemble's moment-matched);
    targets alike.
    """
    n_bins = check_int("n_bins", n_bins, minimum=1)
    binning = check_choice("binning", binning, ENCE_BINNINGS)
    errors = (torch.as_tensor(targets, dtype=torch.float64)
              - torch.as_tensor(mean, dtype=torch.float64)).reshape(-1)
    variances = torch.as_tensor(var, dtype=torch.float64).reshape(-1)
    rmv, rmse, count = _sigma_bins(errors, variances, n_bins, binning)
    return {"rmv": rmv.tolist(), "rmse": rmse.tolist(), "count": count.tolist()}

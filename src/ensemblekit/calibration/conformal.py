"""Split-conformal prediction intervals, normalised by the predicted sigma.

Fitted on a calibration split (the validation split, never test), for each output separately:

- scores ``r_i = |y_i - mu_i| / sigma_i`` of the n calibration inputs, with ``mu`` and
  ``sigma^2`` the moment-matched Gaussian of the members (so the intervals are the same family
  as ``gaussian_interval``'s ``mu +- z sigma``, with ``z`` replaced by a fitted ``q``);
- ``q`` = the ``k``-th smallest score, ``k = ceil((n + 1)(1 - alpha))``: the (1 - alpha)
  empirical quantile with the finite-sample correction ``ceil((n + 1)(1 - alpha)) / n``;
- test intervals ``mu +- q sigma``. For exchangeable calibration and test inputs the coverage
  is at least ``1 - alpha`` (and below ``1 - alpha + 1 / (n + 1)`` when scores have no ties),
  whatever the model (Vovk et al. 2005; Lei et al. 2018); normalising by sigma makes the
  intervals wider where the model is less certain.

A finite ``q`` needs ``k <= n``, i.e. ``n >= (1 - alpha) / alpha`` calibration inputs (19 at
alpha = 0.05); with fewer the only valid interval is infinite, and the functions raise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._validation import check_float
from ..metrics._inputs import check_gaussian_members, check_targets
from ..metrics.gaussian import _moments
from ..metrics.regression import _covered, _z


@dataclass(frozen=True)
class ConformalIntervals:
    """Test intervals from ``conformal_intervals``.

    lower, upper: float64 (N, D) interval ends; quantile: (D,) the fitted ``q`` per output;
    alpha and nominal (``1 - alpha``); n_calibration; coverage: the fraction of the N * D test
    targets inside (None without targets); gaussian_coverage: that of the uncalibrated
    ``mu +- z sigma`` at the same nominal level, for comparison (None without targets);
    mpiw: mean width ``2 q sigma`` over the N * D values.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    quantile: torch.Tensor
    alpha: float
    nominal: float
    n_calibration: int
    coverage: float | None
    gaussian_coverage: float | None
    mpiw: float

    def summary(self) -> dict:
        """The scalars (and ``quantile`` as a list), JSON-friendly, without the intervals."""
        return {"alpha": self.alpha, "nominal": self.nominal, "coverage": self.coverage,
                "gaussian_coverage": self.gaussian_coverage, "mpiw": self.mpiw,
                "quantile": self.quantile.tolist(), "n_calibration": self.n_calibration}


def conformal_quantile(scores: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of n scores, per column: (n,) -> 0-d,
    (n, D) -> (D,), float64. Raises when n is too small for a finite quantile."""
    alpha = _alpha(alpha)
    if not isinstance(scores, torch.Tensor) or scores.ndim not in (1, 2) or scores.numel() == 0:
        raise ValueError("scores must be a non-empty tensor of shape (n,) or (n, D)")
    n = scores.shape[0]
    rank = math.ceil((n + 1) * (1 - alpha))
    if rank > n:
        raise ValueError(
            f"split conformal at alpha={alpha:g} needs at least "
            f"{math.ceil((1 - alpha) / alpha)} calibration inputs for a finite interval, got "
            f"{n}; use a larger validation split or a larger alpha")
    return scores.double().sort(0).values[rank - 1]


def fit_conformal(member_means: torch.Tensor, member_vars: torch.Tensor, targets: torch.Tensor,
                  alpha: float = 0.05) -> torch.Tensor:
    """``q`` per output, (D,) float64, from CALIBRATION member means and variances (M, n, D)
    and targets (n, D) (or (n,) for D = 1): the conformal quantile of ``|y - mu| / sigma``."""
    alpha = _alpha(alpha)
    means, variances = check_gaussian_members(member_means, member_vars)
    targets = check_targets("targets", targets, shape=means.shape[1:]).to(means.device)
    moments = _moments(means, variances)
    return conformal_quantile((targets - moments.mean).abs() / moments.variance.sqrt(), alpha)


def conformal_intervals(
    calibration_means: torch.Tensor, calibration_vars: torch.Tensor,
    calibration_targets: torch.Tensor, test_means: torch.Tensor, test_vars: torch.Tensor,
    test_targets: torch.Tensor | None = None, *, alpha: float = 0.05,
) -> ConformalIntervals:
    """Fit ``q`` on the calibration split, return the test intervals and (with targets) their
    empirical coverage beside the nominal ``1 - alpha``.

    calibration_means, calibration_vars: (M, n, D) member means and variances of the
    calibration (validation) inputs; calibration_targets (n, D); test_means, test_vars
    (M, N, D) of the test inputs (the same M and D); test_targets (N, D) or None.
    """
    alpha = _alpha(alpha)
    means, variances = check_gaussian_members(test_means, test_vars, prefix="test_")
    calibration = check_gaussian_members(calibration_means, calibration_vars,
                                         prefix="calibration_")
    if calibration[0].shape[2] != means.shape[2]:
        raise ValueError(f"calibration and test predictions must have one number of outputs "
                         f"D, got {calibration[0].shape[2]} and {means.shape[2]}")
    if test_targets is not None:
        test_targets = check_targets("test_targets", test_targets, shape=means.shape[1:])
    quantile = fit_conformal(*calibration, calibration_targets, alpha).to(means.device)
    moments = _moments(means, variances)
    std = moments.variance.sqrt()
    half_width = quantile * std
    coverage = gaussian_coverage = None
    if test_targets is not None:
        errors = test_targets.to(means.device) - moments.mean
        coverage = (errors.abs() <= half_width).double().mean().item()
        gaussian_coverage = _covered(errors, moments.variance, _z(1 - alpha)).double().mean()
        gaussian_coverage = gaussian_coverage.item()
    return ConformalIntervals(
        lower=moments.mean - half_width, upper=moments.mean + half_width, quantile=quantile,
        alpha=alpha, nominal=1 - alpha, n_calibration=int(calibration[0].shape[1]),
        coverage=coverage, gaussian_coverage=gaussian_coverage,
        mpiw=(2 * half_width).mean().item())


def _alpha(alpha) -> float:
    return check_float("alpha", alpha, minimum=0.0, maximum=1.0, min_inclusive=False,
                       max_inclusive=False)

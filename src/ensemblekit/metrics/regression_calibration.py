"""Calibration of a regression model's predicted distribution: quantile calibration and ENCE.

Both read one Gaussian ``N(mu, s2)`` per output -- for an ensemble the moment-matched one
(``moment_match``), the distribution whose intervals ``picp`` / ``mpiw`` and the split-conformal
intervals measure -- with ``mean``, ``var`` of shape (B, D) or (B,) and targets alike.

- **Quantile calibration** (Kuleshov et al. 2018): at each level ``p_j`` the observed
  frequency ``p_hat_j = #{F(y) <= p_j} / n`` of the predictive CDF ``F`` (the PIT values),
  pooled over the B * D values (PIT values are unit-free); a calibrated model has
  ``p_hat_j = p_j``. The calibration curve is ``(p_j, p_hat_j)``; the calibration error is the
  mean absolute gap ``mean_j |p_j - p_hat_j|`` over the levels (in probability units, like
  ECE; the same as uncertainty-toolbox's mean absolute calibration error on the same levels).
- **ENCE** (Levi et al. 2019): the points of each output are binned by predicted sigma and
  ``ENCE = (1/B') sum_b |RMV(b) - RMSE(b)| / RMV(b)``, with ``RMV(b) = sqrt(mean s2)`` and
  ``RMSE(b) = sqrt(mean (y - mu)^2)`` in bin b, over the B' non-empty bins; averaged over the D
  outputs. Bins are ``"equal_mass"`` (Levi et al.: the points sorted by sigma, split into runs
  of sizes differing by at most one) or ``"equal_width"`` (intervals of equal width between the
  smallest and largest sigma; netcal's ``ENCE``).
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_int, check_tensor
from .calibration import _bin_index, _equal_mass_index
from .gaussian import _normal_cdf
from .regression import _checked

#: Default levels of the calibration curve: 0.01, 0.02, ..., 0.99 (the two ends, always
#: observed at 0 and 1, are left out so they do not dilute the mean gap).
CALIBRATION_LEVELS = tuple(j / 100 for j in range(1, 100))
#: The ways ``ence`` can bin points by predicted sigma.
ENCE_BINNINGS = ("equal_mass", "equal_width")


def quantile_calibration_curve(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor,
                               levels=CALIBRATION_LEVELS) -> dict[str, torch.Tensor]:
    """The calibration curve: ``{"expected": p (L,), "observed": p_hat (L,)}`` float64, where
    ``p_hat_j`` is the fraction of the B * D values with ``Phi((y - mu) / sigma) <= p_j``.

    levels: strictly increasing probabilities in [0, 1] (default ``CALIBRATION_LEVELS``).
    """
    errors, variances = _checked(mean, var, targets)
    levels = check_levels(levels).to(errors.device)
    counts = _quantile_counts(errors, variances, levels)
    return {"expected": levels, "observed": counts.double() / errors.numel()}


def quantile_calibration_error(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor,
                               levels=CALIBRATION_LEVELS) -> float:
    """Mean absolute gap ``mean_j |p_j - p_hat_j|`` of ``quantile_calibration_curve``, in [0, 1)."""
    curve = quantile_calibration_curve(mean, var, targets, levels)
    return (curve["expected"] - curve["observed"]).abs().mean().item()


def ence(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, n_bins: int = 10,
         binning: str = "equal_mass") -> float:
    """Expected normalised calibration error (module docstring): mean, var (B, D) or (B,),
    targets alike; ``binning`` one of ``ENCE_BINNINGS``. 0 when each bin's RMSE equals its
    root mean variance; >= 0, unit-free."""
    n_bins = check_int("n_bins", n_bins, minimum=1)
    binning = check_choice("binning", binning, ENCE_BINNINGS)
    errors, variances = _checked(mean, var, targets)
    return _ence(_columns(errors), _columns(variances), n_bins, binning)


def check_levels(levels) -> torch.Tensor:
    """Levels as a float64 (L,) tensor: non-empty, in [0, 1], strictly increasing."""
    values = torch.as_tensor(levels, dtype=torch.float64) if not isinstance(
        levels, torch.Tensor) else check_tensor("levels", levels, ndim=1).double()
    if values.ndim != 1 or values.numel() == 0:
        raise ValueError(f"levels must be a non-empty sequence of probabilities, got shape "
                         f"{tuple(values.shape)}")
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise ValueError(f"levels must lie in [0, 1], got {values.tolist()}")
    if values.numel() > 1 and not bool((values[1:] > values[:-1]).all()):
        raise ValueError(f"levels must be strictly increasing, got {values.tolist()}")
    return values


def _quantile_counts(errors: torch.Tensor, variances: torch.Tensor,
                     levels: torch.Tensor) -> torch.Tensor:
    """(L,) int64 counts of the PIT values ``Phi(err / sigma)`` at or below each level."""
    pit = _normal_cdf(errors / variances.sqrt()).reshape(-1)
    # Levels strictly below each PIT value: it is counted at every later level.
    first_level = torch.searchsorted(levels, pit, right=False)
    return torch.bincount(first_level, minlength=levels.numel() + 1).cumsum(0)[:-1]


def _ence(errors: torch.Tensor, variances: torch.Tensor, n_bins: int, binning: str) -> float:
    """float64 (N, D) errors and variances -> ENCE averaged over the D outputs (no checks)."""
    per_output = []
    for error, variance in zip(errors.T, variances.T, strict=True):
        rmv, bin_rmse, _ = _sigma_bins(error, variance, n_bins, binning)
        per_output.append(((rmv - bin_rmse).abs() / rmv).mean())
    return torch.stack(per_output).mean().item()


def _sigma_bins(error: torch.Tensor, variance: torch.Tensor, n_bins: int, binning: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 (N,) errors and variances binned by sigma -> the non-empty bins' root mean
    variance, RMSE and count (no checks)."""
    std = variance.sqrt()
    index = _equal_mass_index(std, n_bins) if binning == "equal_mass" \
        else _equal_width_index(std, n_bins)
    count = torch.bincount(index, minlength=n_bins)
    filled = count > 0
    mean_var = torch.bincount(index, weights=variance, minlength=n_bins)[filled]
    mean_square = torch.bincount(index, weights=error.square(), minlength=n_bins)[filled]
    return (mean_var / count[filled]).sqrt(), (mean_square / count[filled]).sqrt(), \
        count[filled]


def _equal_width_index(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(N,) -> each value's bin of ``n_bins`` equal-width bins between min and max (the last
    closed): ``numpy.histogram``'s bins, by the equal-width binning of ``metrics.calibration``."""
    low, high = values.min(), values.max()
    if high == low:
        return torch.zeros_like(values, dtype=torch.long)
    return _bin_index((values - low) / (high - low), n_bins)[1]


def _columns(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1); (B, D) stays: one column per output."""
    return values.unsqueeze(1) if values.ndim == 1 else values

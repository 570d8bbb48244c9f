"""Variance scaling: the regression temperature, fitted on the validation split (never test).

One scalar ``s > 0`` rescales the predicted standard deviation, ``sigma -> s sigma`` (the
variance times ``s^2``). ``s`` minimises the validation NLL of the moment-matched Gaussian
``N(mu, s^2 s2)`` (the distribution whose intervals ``picp`` and the conformal intervals
measure), which has a closed form: ``s^2 = mean z^2`` over the N * D validation values,
``z = (y - mu) / sigma`` -- exact, no search and no learning rate.

Applied to an ensemble, the scaling dilates the mixture about its mean: member ``m`` gets the
mean ``mu* + s (mu_m - mu*)`` and the variance ``s^2 s2_m``. The moment-matched mean stays,
and its variance, aleatoric and epistemic parts are all multiplied by ``s^2``; so the Gaussian
view is exactly ``N(mu, s^2 s2)`` and ``evaluate_regression(*scaler(means, vars), y)`` gives
every metric of the scaled ensemble (the mixture NLL is that of the dilated mixture).

Identified or not applied (the rule of temperature scaling): the fit returns ``s = 1`` with
``fitted = False`` and the reason -- also raised as a warning -- never a bound, when

- the validation split has fewer than ``MIN_VALIDATION_POINTS`` = 20 inputs: for Gaussian
  errors the relative standard error of the fitted s is about ``1 / sqrt(2 N)`` (16 % at
  N = 20, more for heavy tails); below that s is mostly noise;
- the minimiser lies at or beyond ``bounds`` (default ``VARIANCE_SCALE_BOUNDS`` = (0.01, 100)),
  e.g. every validation target predicted exactly (s -> 0).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .._validation import check_float, check_int, check_sequence
from ..members import GaussianMembers
from ..metrics._inputs import check_gaussian_members, check_targets
from ..metrics.gaussian import _gaussian_log_prob, _moments

#: The range of ``s`` a fit may return; a minimiser outside it is not applied.
VARIANCE_SCALE_BOUNDS = (1e-2, 1e2)
#: Fewer validation inputs than this and the scale is not fitted (module docstring).
MIN_VALIDATION_POINTS = 20


@dataclass(frozen=True)
class VarianceScaling:
    """The outcome of ``fit_variance_scaling``.

    scale: the ``s`` to apply (1.0 when not fitted); fitted: whether it was identified;
    reason: why not (None when fitted); n_validation: validation inputs used;
    validation_nll: ``{"before", "after"}`` NLL of the moment-matched Gaussian (nats, summed
    over outputs, mean over inputs) at s = 1 and at ``scale``.
    """

    scale: float
    fitted: bool
    reason: str | None
    n_validation: int
    validation_nll: dict[str, float]

    def as_dict(self) -> dict:
        """Plain JSON-friendly values (for a report or a checkpoint's metadata)."""
        return asdict(self)


def fit_variance_scaling(
    member_means: torch.Tensor, member_vars: torch.Tensor, targets: torch.Tensor, *,
    bounds: tuple[float, float] = VARIANCE_SCALE_BOUNDS,
    min_validation: int = MIN_VALIDATION_POINTS,
) -> VarianceScaling:
    """Fit ``s`` on VALIDATION member means and variances (M, N, D) and targets (N, D) (or
    (N,) for D = 1); one model is M = 1. Warns (UserWarning) when the scale is not applied."""
    low, high = _checked_bounds(bounds)
    min_validation = check_int("min_validation", min_validation, minimum=1)
    means, variances = check_gaussian_members(member_means, member_vars)
    targets = check_targets("targets", targets, shape=means.shape[1:]).to(means.device)
    moments = _moments(means, variances)
    squared_z = (targets - moments.mean).square() / moments.variance
    n = targets.shape[0]
    scale = math.sqrt(squared_z.mean().item())
    reason = None
    if n < min_validation:
        reason = (f"the validation split has {n} inputs, fewer than the {min_validation} a "
                  "variance scale needs to be identified")
    elif not low < scale < high:
        reason = (f"the NLL minimiser s = {scale:.4g} lies at or beyond the bounds "
                  f"[{low:g}, {high:g}]: a bound is not a fit")
    if reason is not None:
        warnings.warn(f"variance scaling not applied (s = 1): {reason}", stacklevel=2)
        scale = 1.0

    def nll(s: float) -> float:
        log_prob = _gaussian_log_prob(targets - moments.mean, moments.variance * s * s)
        return -log_prob.sum(-1).mean().item()

    return VarianceScaling(scale=scale, fitted=reason is None, reason=reason, n_validation=n,
                           validation_nll={"before": nll(1.0), "after": nll(scale)})


def scale_members(member_means: torch.Tensor, member_vars: torch.Tensor,
                  scale: float) -> GaussianMembers:
    """Dilate the members' mixture about its mean by ``scale``: means
    ``mu* + s (mu_m - mu*)``, variances ``s^2 s2_m``; (M, B, D) each -> float64 GaussianMembers
    (module docstring)."""
    scale = check_float("scale", scale, minimum=0.0, min_inclusive=False)
    means, variances = check_gaussian_members(member_means, member_vars)
    centre = means.mean(0)
    return GaussianMembers(centre + scale * (means - centre), variances * scale**2)


class VarianceScaler(nn.Module):
    """Applies a fitted variance scale to member Gaussians: ``(means, variances)`` (M, B, D)
    -> ``GaussianMembers`` (see ``scale_members``). ``scale`` is a float64 buffer
    (``state_dict``); ``fitted`` and ``reason`` say whether it was identified.

    ``VarianceScaler.fit(val_means, val_vars, val_targets)`` fits it (``fit_variance_scaling``).
    """

    def __init__(self, scale: float = 1.0, *, fitted: bool = True, reason: str | None = None):
        super().__init__()
        scale = check_float("scale", scale, minimum=0.0, min_inclusive=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))
        self.fitted = fitted
        self.reason = reason

    @classmethod
    def fit(cls, member_means: torch.Tensor, member_vars: torch.Tensor, targets: torch.Tensor,
            **options) -> VarianceScaler:
        """A scaler from ``fit_variance_scaling(member_means, member_vars, targets, **options)``."""
        result = fit_variance_scaling(member_means, member_vars, targets, **options)
        return cls(result.scale, fitted=result.fitted, reason=result.reason)

    def forward(self, member_means: torch.Tensor, member_vars: torch.Tensor) -> GaussianMembers:
        return scale_members(member_means, member_vars, self.scale.item())

    def extra_repr(self) -> str:
        text = f"scale={self.scale.item():.6g}, fitted={self.fitted}"
        return text if self.reason is None else f"{text}, reason={self.reason!r}"


def _checked_bounds(bounds) -> tuple[float, float]:
    check_sequence("bounds", bounds)
    if len(bounds) != 2:
        raise ValueError(f"bounds must be (lowest, highest) scales, got {bounds!r}")
    low = check_float("bounds[0]", bounds[0], minimum=0.0, min_inclusive=False, maximum=1.0)
    high = check_float("bounds[1]", bounds[1], minimum=1.0)
    return low, high

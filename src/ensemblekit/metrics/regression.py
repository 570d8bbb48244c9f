"""Regression metrics: errors of the mean, proper scoring rules, prediction intervals.

Two views of an ensemble's prediction (see ``metrics.gaussian``), each named in the function:

- the **mixture** of the members, ``(1/M) sum_m N(mu_m, s2_m)``: ``mixture_nll`` and
  ``mixture_crps`` take member means and variances ``(M, B, D)``;
- one **Gaussian** ``N(mu, s2)`` per output: ``rmse``, ``mae``, ``gaussian_nll``,
  ``gaussian_crps``, ``picp``, ``mpiw`` and ``gaussian_interval`` take ``mean`` and ``var`` of
  shape (B, D) or (B,) -- for an ensemble its moment-matched mean and variance
  (``moment_match``), for a single model its own.

Prediction intervals are those of the Gaussian view: the central interval
``mu +- z sigma``, ``z = Phi^-1((1 + level) / 2)`` (the same family as the split-conformal
intervals of ``ensemblekit.calibration``, which replace ``z`` by a fitted quantile).

Targets have the predictions' shape, (B, D) or (B,) ((B,) is also taken for D = 1). Values are
in the targets' units as given (un-standardise predictions first to report original units).
NLL is in nats, summed over the D outputs (the joint density of independent outputs) and
averaged over the B inputs; every other metric averages over the B * D values. Python floats,
computed in float64.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_float
from ._inputs import (
    _check_floating_nonempty,
    check_gaussian,
    check_gaussian_members,
    check_targets,
)
from .gaussian import _gaussian_log_prob, _mixture_log_prob, _normal_cdf

#: The central interval levels that ``evaluate_regression`` reports (keys ``picp_68`` ...).
INTERVAL_LEVELS = {"68": 0.68, "95": 0.95}
_SQRT_PI = math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)
# Elements of one (pairs, b, D) block of the mixture CRPS's member-pair term.
_PAIR_BLOCK = 1 << 22


def rmse(mean: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error ``sqrt(mean (y - mu)^2)``: mean (B, D) or (B,), targets alike."""
    errors = _errors(mean, targets)
    return errors.square().mean().sqrt().item()


def mae(mean: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean absolute error ``mean |y - mu|``: mean (B, D) or (B,), targets alike."""
    return _errors(mean, targets).abs().mean().item()


def gaussian_nll(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor) -> float:
    """``mean_b sum_d [0.5 log(2 pi s2) + (y - mu)^2 / (2 s2)]`` in nats: the NLL of one
    Gaussian per output. mean, var: (B, D) or (B,) with var > 0; targets alike."""
    errors, variances = _checked(mean, var, targets)
    return -_per_input(_gaussian_log_prob(errors, variances)).mean().item()


def mixture_nll(member_means: torch.Tensor, member_vars: torch.Tensor,
                targets: torch.Tensor) -> float:
    """``mean_b -log (1/M) sum_m prod_d N(y_bd; mu_mbd, s2_mbd)`` in nats (logsumexp).

    member_means, member_vars: (M, B, D), variances > 0; targets (B, D), or (B,) for D = 1.
    Lower than ``gaussian_nll`` of the moment-matched Gaussian where a target sits near one
    member's mode, higher where it falls between separated members.
    """
    means, variances, targets = _checked_members(member_means, member_vars, targets)
    return -_mixture_log_prob(means, variances, targets).mean().item()


def gaussian_crps(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor) -> float:
    """Continuous ranked probability score of ``N(mu, s2)``, averaged over the B * D values.

    Closed form (Gneiting & Raftery 2007): ``s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)]``,
    ``z = (y - mu) / s``; in the targets' units, >= 0, lower is better.
    """
    errors, variances = _checked(mean, var, targets)
    return _gaussian_crps(errors, variances).mean().item()


def mixture_crps(member_means: torch.Tensor, member_vars: torch.Tensor,
                 targets: torch.Tensor) -> float:
    """CRPS of each output's mixture ``(1/M) sum_m N(mu_m, s2_m)``, averaged over the B * D.

    Exact closed form (Grimit et al. 2006), no sampling and no integration:
    ``CRPS = E|Y - y| - 0.5 E|Y - Y'| = mean_m A(y - mu_m, s2_m)
    - 0.5 mean_{m,k} A(mu_m - mu_k, s2_m + s2_k)`` with ``A(m, v) = E|N(m, v)|
    = 2 sqrt(v) phi(m / sqrt(v)) + m (2 Phi(m / sqrt(v)) - 1)``. Cost O(M^2 B D).
    """
    means, variances, targets = _checked_members(member_means, member_vars, targets)
    return _mixture_crps(means, variances, targets).mean().item()


def gaussian_interval(mean: torch.Tensor, var: torch.Tensor, level: float = 0.95
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The central ``level`` interval ``mu -+ z sigma``, ``z = Phi^-1((1 + level) / 2)``:
    (lower, upper), each float64 of mean's shape (B, D) or (B,)."""
    mean, var = check_gaussian(mean, var)
    half_width = _z(_level(level)) * var.sqrt()
    return mean - half_width, mean + half_width


def picp(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor,
         level: float = 0.95) -> float:
    """Prediction interval coverage probability: the fraction of the B * D targets inside the
    central ``level`` interval ``|y - mu| <= z sigma`` (see ``gaussian_interval``)."""
    errors, variances = _checked(mean, var, targets)
    return _covered(errors, variances, _z(_level(level))).double().mean().item()


def mpiw(mean: torch.Tensor, var: torch.Tensor, level: float = 0.95) -> float:
    """Mean prediction interval width ``mean 2 z sigma`` of the central ``level`` interval,
    in the targets' units: mean, var (B, D) or (B,)."""
    _, var = check_gaussian(mean, var)
    return (2 * _z(_level(level)) * var.sqrt()).mean().item()


def _level(level) -> float:
    return check_float("level", level, minimum=0.0, maximum=1.0, min_inclusive=False,
                       max_inclusive=False)


def _z(level: float) -> float:
    """``Phi^-1((1 + level) / 2)``: the half-width of the central ``level`` interval in sigmas."""
    return torch.special.ndtri(torch.tensor((1 + level) / 2, dtype=torch.float64)).item()


def _covered(errors: torch.Tensor, variances: torch.Tensor, z: float) -> torch.Tensor:
    return errors.abs() <= z * variances.sqrt()


def _expected_abs(offset: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """``A(m, v) = E|X|`` for ``X ~ N(m, v)``, elementwise."""
    std = variance.sqrt()
    z = offset / std
    density = torch.exp(-0.5 * z.square()) * _INV_SQRT_2PI
    return 2 * std * density + offset * (2 * _normal_cdf(z) - 1)


def _gaussian_crps(errors: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Elementwise Gaussian CRPS ``A(y - mu, s2) - sqrt(s2 / pi)`` (no checks)."""
    return _expected_abs(errors, variances) - variances.sqrt() / _SQRT_PI


def _mixture_crps(means: torch.Tensor, variances: torch.Tensor,
                  targets: torch.Tensor) -> torch.Tensor:
    """float64 (M, b, D), (M, b, D), (b, D) -> (b, D) elementwise mixture CRPS (no checks)."""
    n_members = means.shape[0]
    to_target = _expected_abs(targets - means, variances).mean(0)
    # E|Y - Y'| = mean over ordered member pairs: each unordered pair m < k twice, plus the
    # diagonal A(0, 2 s2_m) = 2 sqrt(s2_m / pi). The pairs' (P, b, D) temporaries are computed
    # in blocks of inputs.
    first, second = torch.triu_indices(n_members, n_members, offset=1, device=means.device)
    rows = max(1, _PAIR_BLOCK // max(1, first.numel() * means.shape[2]))
    pair_sums = torch.cat([
        _expected_abs(block_means[first] - block_means[second],
                      block_vars[first] + block_vars[second]).sum(0)
        for block_means, block_vars in zip(means.split(rows, 1), variances.split(rows, 1),
                                           strict=True)
    ]) if first.numel() else torch.zeros_like(to_target)
    diagonal = (2 / _SQRT_PI) * variances.sqrt().sum(0)
    spread = (2 * pair_sums + diagonal) / n_members**2
    return to_target - 0.5 * spread


def _per_input(elementwise: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B,) summed over outputs; (B,) stays (one output)."""
    return elementwise.sum(-1) if elementwise.ndim == 2 else elementwise


def _errors(mean, targets) -> torch.Tensor:
    mean = _check_floating_nonempty("mean", mean, ndim=(1, 2)).detach().to(torch.float64)
    return check_targets("targets", targets, shape=mean.shape) - mean


def _checked(mean, var, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked float64 errors ``y - mu`` and variances, of mean's shape."""
    mean, var = check_gaussian(mean, var)
    return check_targets("targets", targets, shape=mean.shape) - mean, var


def _checked_members(member_means, member_vars, targets):
    means, variances = check_gaussian_members(member_means, member_vars)
    return means, variances, check_targets("targets", targets, shape=means.shape[1:])

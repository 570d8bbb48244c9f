"""The ensemble of Gaussians: the mixture of the members, its moments, and their two parts.

Input: member means ``member_means`` and variances ``member_vars``, each (M, B, D) -- member
``m`` predicts ``N(mu_m, s2_m)`` for each of the D outputs of each of the B inputs,
independently over the outputs (a :class:`~ensemblekit.members.GaussianMembers` pair).

- The ensemble's predictive distribution is the equal-weight **mixture**
  ``p(y) = (1/M) sum_m prod_d N(y_d; mu_md, s2_md)``; ``mixture_log_prob`` is its log density
  by ``logsumexp`` over members (exact where the members disagree: no moment matching).
- Its **moment-matched Gaussian** (Deep Ensembles, Lakshminarayanan et al. 2017, sec. 2.4) has
  the mixture's mean and variance per output: ``mu* = mean_m mu_m`` and
  ``s2* = mean_m (s2_m + mu_m^2) - mu*^2``.
- Law of total variance: ``s2* = aleatoric + epistemic`` with ``aleatoric = mean_m s2_m`` (the
  noise the members predict) and ``epistemic = mean_m (mu_m - mu*)^2`` (how much their means
  disagree). The epistemic part is the POPULATION variance over members (divided by M, not
  M - 1): it is the variance of the mixture's component means, so that the two parts add up to
  the mixture's variance exactly. One member has epistemic 0.

Everything is float64 and returned as tensors of shape (B, D) (``mixture_log_prob``: (B,)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._inputs import check_gaussian_members, check_targets

_LOG_2PI = math.log(2 * math.pi)


class GaussianMoments(NamedTuple):
    """The moment-matched Gaussian of an ensemble and its variance's two parts, each (B, D)
    float64: ``variance = aleatoric + epistemic`` (up to rounding)."""

    mean: torch.Tensor
    variance: torch.Tensor
    aleatoric: torch.Tensor
    epistemic: torch.Tensor


def moment_match(member_means: torch.Tensor, member_vars: torch.Tensor) -> GaussianMoments:
    """Mean ``mean_m mu_m``, variance, aleatoric ``mean_m s2_m`` and epistemic
    ``mean_m (mu_m - mu*)^2`` parts of the mixture: (M, B, D), (M, B, D) -> 4 x (B, D)."""
    return _moments(*check_gaussian_members(member_means, member_vars))


def aleatoric_variance(member_means: torch.Tensor, member_vars: torch.Tensor) -> torch.Tensor:
    """``mean_m s2_m``, the members' mean predicted noise variance: (M, B, D) -> (B, D)."""
    return moment_match(member_means, member_vars).aleatoric


def epistemic_variance(member_means: torch.Tensor, member_vars: torch.Tensor) -> torch.Tensor:
    """``mean_m (mu_m - mean_m mu_m)^2``, the population variance of the member means over
    the members (divided by M): (M, B, D) -> (B, D); 0 for one member."""
    return moment_match(member_means, member_vars).epistemic


def mixture_log_prob(member_means: torch.Tensor, member_vars: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    """``log (1/M) sum_m prod_d N(y_d; mu_md, s2_md)`` per input: (M, B, D), (M, B, D) and
    targets (B, D) (or (B,) for D = 1) -> (B,) float64 nats, by ``logsumexp`` over members."""
    means, variances = check_gaussian_members(member_means, member_vars)
    targets = check_targets("targets", targets, shape=means.shape[1:])
    return _mixture_log_prob(means, variances, targets)


def _moments(means: torch.Tensor, variances: torch.Tensor) -> GaussianMoments:
    """float64 (M, b, D) member means and variances -> their ``GaussianMoments`` (no checks)."""
    mean = means.mean(0)
    aleatoric = variances.mean(0)
    # The mean of squared deviations, not E[mu^2] - mu*^2: no cancellation when the members
    # nearly agree far from zero, and never negative.
    epistemic = (means - mean).square_().mean(0)
    return GaussianMoments(mean, aleatoric + epistemic, aleatoric, epistemic)


def _normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """``Phi(z)`` elementwise, accurate in the lower tail: as ``0.5 erfc(-z / sqrt 2)``
    (``torch.special.ndtr`` loses relative precision below z = -5 and is 0 below -9.4)."""
    return 0.5 * torch.special.erfc(-z / math.sqrt(2))


def _gaussian_log_prob(errors: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(y; mu, s2)`` from errors ``y - mu`` and variances (no checks)."""
    return -0.5 * (_LOG_2PI + variances.log() + errors.square() / variances)


def _mixture_log_prob(means: torch.Tensor, variances: torch.Tensor,
                      targets: torch.Tensor) -> torch.Tensor:
    """float64 (M, b, D), (M, b, D), (b, D) -> (b,) mixture log density (no checks)."""
    member_log_prob = _gaussian_log_prob(targets - means, variances).sum(-1)  # (M, b)
    return torch.logsumexp(member_log_prob, 0) - math.log(means.shape[0])

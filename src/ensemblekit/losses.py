"""Training losses of Gaussian regression members, and the variance head's transform.

A regression member ends in a mean and a raw variance per target; the variance is
``positive_variance(raw) = softplus(raw) + VARIANCE_FLOOR``. The losses take ``mean``,
``variance`` and ``target`` of one shape (e.g. (N, D), or (M*N, D) for tiled members) and
reduce over every element (``reduction="mean"``, as ``torch.nn.functional.gaussian_nll_loss``;
for D > 1 that is the metrics' NLL, which sums over the D outputs, divided by D):

- ``gaussian_nll_loss``: ``0.5 [log(2 pi s2) + (y - mu)^2 / s2]``, constant included, so a
  value equals ``-scipy.stats.norm.logpdf(y, mu, sqrt(s2))``. Its gradient in the mean,
  ``(mu - y) / s2``, is small where the predicted variance is large: such points barely move
  the mean, and plain NLL training under-fits it there.
- ``beta_nll_loss`` (Seitzer et al. 2022): each element's NLL weighted by
  ``stop_gradient(s2^beta)``; the mean's gradient becomes ``(mu - y) s2^(beta - 1)``.
  ``beta = 0`` is ``gaussian_nll_loss``; ``beta = 1`` gives the mean exactly the gradient of
  ``0.5 (mu - y)^2`` (the MSE's, up to its factor 2); default ``beta = 0.5``.
- ``mse_loss``: ``(mu - y)^2`` for an optional warm-up that fits the mean before the variance
  (as Deep Ensembles' practice and Seitzer et al.'s baselines). It adds ``0 * variance`` so the
  variance head stays in the autograd graph with a zero gradient: DistributedDataParallel
  requires every parameter to take part in every step.

``regression_loss(mean, variance, target, loss=...)`` picks one of ``REGRESSION_LOSSES`` by
name (a training config names its loss; a warm-up runs ``"mse"`` for its first epochs).
Values are NOT checked per call (a check would force a host-device sync every step): pass
variances from ``positive_variance``; shapes are checked.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validation import check_choice, check_float, check_tensor

#: Added to ``softplus(raw)`` so a variance is never 0. Deep Ensembles' 1e-6, read in
#: STANDARDISED target units (every regression set here is standardised on its training
#: part): a predicted std of at least 1e-3 of the target's std, which caps a point's density
#: at 0.5 log(1 / (2 pi 1e-6)) = 5.99 nats -- far below any real fit on the UCI sets (the best
#: published, naval, is a std of ~0.2 target stds) yet enough to keep NLL finite when a member
#: interpolates a training point.
VARIANCE_FLOOR = 1e-6
#: The losses ``regression_loss`` knows.
REGRESSION_LOSSES = ("gaussian_nll", "beta_nll", "mse")
#: How a loss reduces its elements (as ``torch.nn.functional`` losses).
REDUCTIONS = ("mean", "sum", "none")
_LOG_2PI = math.log(2 * math.pi)


def positive_variance(raw: torch.Tensor, floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """``softplus(raw) + floor``: any real tensor -> variances >= floor, elementwise."""
    check_tensor("raw", raw)
    return F.softplus(raw) + check_float("floor", floor, minimum=0.0)


def inverse_positive_variance(variance: torch.Tensor,
                              floor: float = VARIANCE_FLOOR) -> torch.Tensor:
    """The raw value whose ``positive_variance`` is ``variance`` (> floor): for initialising a
    variance head's bias, e.g. to a predicted variance of 1 (the standardised targets')."""
    check_tensor("variance", variance)
    floor = check_float("floor", floor, minimum=0.0)
    excess = variance - floor
    if bool((excess <= 0).any()):
        raise ValueError(f"variance must exceed the floor {floor:g} to have a raw value, got a "
                         f"minimum of {variance.min().item():.6g}")
    # log(expm1(v)) = v + log(-expm1(-v)): no overflow for large v.
    return excess + torch.log(-torch.expm1(-excess))


def gaussian_nll_loss(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor, *,
                      reduction: str = "mean") -> torch.Tensor:
    """``0.5 [log(2 pi s2) + (y - mu)^2 / s2]`` per element, reduced (module docstring)."""
    _check(mean, variance, target, reduction)
    return _reduce(_nll(mean, variance, target), reduction)


def beta_nll_loss(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor, *,
                  beta: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    """beta-NLL: ``stop_gradient(s2^beta) * gaussian NLL`` per element, reduced; beta in [0, 1]."""
    _check(mean, variance, target, reduction)
    beta = check_float("beta", beta, minimum=0.0, maximum=1.0)
    return _reduce(variance.detach().pow(beta) * _nll(mean, variance, target), reduction)


def mse_loss(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor, *,
             reduction: str = "mean") -> torch.Tensor:
    """``(mu - y)^2`` per element, reduced; the variance gets a zero gradient (warm-up)."""
    _check(mean, variance, target, reduction)
    return _reduce((mean - target).square() + 0 * variance, reduction)


def regression_loss(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor, *,
                    loss: str = "beta_nll", beta: float = 0.5,
                    reduction: str = "mean") -> torch.Tensor:
    """The loss named ``loss`` (one of ``REGRESSION_LOSSES``); ``beta`` is read by
    ``"beta_nll"`` only."""
    loss = check_choice("loss", loss, REGRESSION_LOSSES)
    if loss == "beta_nll":
        return beta_nll_loss(mean, variance, target, beta=beta, reduction=reduction)
    if loss == "gaussian_nll":
        return gaussian_nll_loss(mean, variance, target, reduction=reduction)
    return mse_loss(mean, variance, target, reduction=reduction)


def _nll(mean: torch.Tensor, variance: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * (_LOG_2PI + variance.log() + (target - mean).square() / variance)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    return values.sum() if reduction == "sum" else values


def _check(mean, variance, target, reduction: str) -> None:
    check_choice("reduction", reduction, REDUCTIONS)
    for name, value in (("mean", mean), ("variance", variance), ("target", target)):
        check_tensor(name, value)
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if not (mean.shape == variance.shape == target.shape):
        raise ValueError(
            f"mean, variance and target must have one shape (no broadcasting: a (B,) target "
            f"against a (B, 1) mean would pair every target with every mean), got "
            f"{tuple(mean.shape)}, {tuple(variance.shape)} and {tuple(target.shape)}")

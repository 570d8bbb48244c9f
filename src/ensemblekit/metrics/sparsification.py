"""How well the predicted sigma ranks the errors: sparsification curves, AUSE, Spearman.

Inputs as in ``metrics.regression``: one Gaussian per output, ``mean`` and ``var`` of shape
(B, D) or (B,) (an ensemble's moment-matched ones), targets alike; each output is ranked on its
own and the results are averaged over the D outputs.

- **Sparsification** (Ilg et al. 2018): remove the fraction ``f = k / N`` (k = 0 .. N - 1) of
  the points with the largest predicted sigma and measure the error of the rest -- RMSE by
  default, or MAE -- divided by the error of all points, so every curve starts at 1. The
  oracle removes by the true absolute error instead (the best any ranking can do). Points with
  tied sigma are removed together in expectation: inside a block of ties the removed error
  grows linearly (the mean over the orders of the block), so the curve does not depend on the
  input order (a constant sigma gives the flat "random" curve).
- **AUSE**: the area between the model's and the oracle's curves, by the trapezoidal rule over
  ``f = k / N`` (TorchUncertainty's convention); >= 0, 0 for a perfect ranking, unit-free.
- **Spearman** rank correlation of the predicted sigma with the absolute error ``|y - mu|``
  (average ranks for ties, as ``scipy.stats.spearmanr``); nan when either is constant.
"""

from __future__ import annotations

import torch

from .._validation import check_choice, check_int
from .regression import _checked
from .regression_calibration import _columns

#: The error measures a sparsification curve can use.
SPARSIFICATION_ERRORS = ("rmse", "mae")


def sparsification_curves(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, *,
                          error: str = "rmse", n_points: int = 100) -> dict[str, torch.Tensor]:
    """The model's and the oracle's sparsification curves (module docstring).

    Returns ``{"fraction", "model", "oracle"}``, float64 (P,): the fractions removed
    ``k / N`` at ``P = min(n_points, N)`` evenly spread k (k = floor(i N / n_points)) and the
    normalised error of the rest, averaged over the outputs. ``error``: "rmse" or "mae".
    """
    error = check_choice("error", error, SPARSIFICATION_ERRORS)
    n_points = check_int("n_points", n_points, minimum=1)
    errors, variances = _checked(mean, var, targets)
    return _curve_points(*_sparsification(_columns(errors), _columns(variances), error),
                         n_points)


def ause(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, *,
         error: str = "rmse") -> float:
    """Area under the sparsification error: ``integral_0^1 (model(f) - oracle(f)) df`` by
    trapezoids over every ``f = k / N``, averaged over the outputs (module docstring)."""
    error = check_choice("error", error, SPARSIFICATION_ERRORS)
    errors, variances = _checked(mean, var, targets)
    return _ause(*_sparsification(_columns(errors), _columns(variances), error))


def spearman_std_error(mean: torch.Tensor, var: torch.Tensor, targets: torch.Tensor) -> float:
    """Spearman correlation of ``sigma`` with ``|y - mu|``, in [-1, 1], averaged over the
    outputs; higher means the predicted sigma ranks the errors better."""
    errors, variances = _checked(mean, var, targets)
    return _spearman(_columns(variances).sqrt(), _columns(errors).abs())


def _sparsification(errors: torch.Tensor, variances: torch.Tensor, error: str
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (N, D) errors and variances -> normalised model and oracle curves (N, D) at
    k = 0 .. N - 1 points removed (no checks)."""
    n = errors.shape[0]
    per_point = errors.square() if error == "rmse" else errors.abs()
    std = variances.sqrt()
    order = torch.argsort(std, dim=0, descending=True, stable=True)
    by_sigma = per_point.gather(0, order)
    start, end = _tie_blocks(std.gather(0, order))
    cumulative = torch.cat([per_point.new_zeros(1, per_point.shape[1]), by_sigma.cumsum(0)])
    removed_start, removed_end = cumulative.gather(0, start), cumulative.gather(0, end)
    removed = torch.arange(n, device=errors.device).unsqueeze(1)
    share = (removed - start).double() / (end - start).double()
    model_removed = removed_start + share * (removed_end - removed_start)
    oracle_removed = cumulative.new_zeros(per_point.shape)
    oracle_removed[1:] = per_point.sort(0, descending=True).values.cumsum(0)[:-1]
    total = per_point.sum(0)
    left = (n - removed).double()
    full = total / n
    # Rounding can leave the remaining sum a hair below 0 once nearly everything is removed.
    curves = [((total - taken).clamp(min=0) / left) / torch.where(full > 0, full, 1.0)
              for taken in (model_removed, oracle_removed)]
    if error == "rmse":
        curves = [curve.sqrt() for curve in curves]
    return curves[0], curves[1]


def _ause(model: torch.Tensor, oracle: torch.Tensor) -> float:
    n = model.shape[0]
    if n == 1:
        return 0.0
    return torch.trapezoid(model - oracle, dx=1.0 / n, dim=0).mean().item()


def _curve_points(model: torch.Tensor, oracle: torch.Tensor, n_points: int
                  ) -> dict[str, torch.Tensor]:
    n = model.shape[0]
    removed = torch.unique(torch.arange(n_points, device=model.device) * n // n_points)
    return {"fraction": removed.double() / n, "model": model[removed].mean(1),
            "oracle": oracle[removed].mean(1)}


def _tie_blocks(sorted_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) values sorted along dim 0 -> int64 (N, D) first position of each one's block of
    equal values and one past its last."""
    n = sorted_values.shape[0]
    positions = torch.arange(n, device=sorted_values.device).unsqueeze(1).expand_as(
        sorted_values)
    new_block = torch.ones_like(sorted_values, dtype=torch.bool)
    new_block[1:] = sorted_values[1:] != sorted_values[:-1]
    start = torch.where(new_block, positions, 0).cummax(0).values
    block_ends = torch.ones_like(new_block)
    block_ends[:-1] = new_block[1:]
    end = torch.where(block_ends, positions + 1, n).flip(0).cummin(0).values.flip(0)
    return start, end


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D) float64 ranks along dim 0 (0-based), ties sharing their mean rank."""
    order = torch.argsort(values, dim=0, stable=True)
    start, end = _tie_blocks(values.gather(0, order))
    ranks = torch.empty_like(values, dtype=torch.float64)
    return ranks.scatter_(0, order, (start + end - 1).double() / 2)


def _spearman(first: torch.Tensor, second: torch.Tensor) -> float:
    """Mean over the D columns of the Spearman correlation of two (N, D) tensors."""
    first, second = _average_ranks(first), _average_ranks(second)
    first = first - first.mean(0)
    second = second - second.mean(0)
    scale = (first.square().sum(0) * second.square().sum(0)).sqrt()
    # Constant ranks (all tied): the correlation is undefined, as in scipy.
    correlation = torch.where(scale > 0, (first * second).sum(0) / scale, torch.nan)
    return correlation.mean().item()

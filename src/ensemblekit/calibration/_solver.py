"""The exact 1-D solve behind every temperature fit: the root of the NLL's slope in b = 1/T.

In ``b = 1 / T`` the validation NLL ``mean_i [logsumexp(b z_i) - b z_i[y_i]]`` is convex, with
derivative ``g(b) = mean_i (E_{softmax(b z_i)}[z_i] - z_i[y_i])`` and second derivative
``mean_i Var_{softmax(b z_i)}[z_i] >= 0``: the minimiser is the one root of the increasing
``g``, found by Newton's method safeguarded by bisection, all in float64 (exact to rounding; no
learning rate, no iteration budget to tune). Whether that root says anything about the data is
:mod:`.identification`'s question.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_float, check_sequence

_MAX_STEPS = 200


def checked_bounds(bounds) -> tuple[float, float]:
    """``(lowest, highest)`` temperatures searched, containing T = 1, else a ValueError."""
    check_sequence("bounds", bounds)
    if len(bounds) != 2:
        raise ValueError(f"bounds must be (lowest, highest) temperatures, got {bounds!r}")
    low = check_float("bounds[0]", bounds[0], minimum=0.0, min_inclusive=False)
    high = check_float("bounds[1]", bounds[1], minimum=1.0)
    if low > 1.0:
        raise ValueError(f"bounds must contain T = 1 (the unscaled logits), got {bounds!r}")
    return low, high


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """``mean_i -log softmax(logits_i)[labels_i]``: (N, K), (N,) -> float."""
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, -1) - picked).mean().item()


def temperature_root(logits: torch.Tensor, labels: torch.Tensor, low_t: float, high_t: float
                     ) -> tuple[float | None, str]:
    """``(T, "")`` for the NLL's minimiser T inside ``[low_t, high_t]``; ``(None, side)`` when
    the slope keeps one sign over the whole range, ``side`` being the bound the NLL falls
    towards: ``"low"`` (it falls as T -> 0) or ``"high"`` (as T grows).

    logits: float64 (N, K); labels: int64 (N,).
    """
    # Centring each row changes no softmax and keeps exp(b z) in range for every b.
    centred = logits - logits.mean(-1, keepdim=True)
    label_logit = centred.gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    def slope_and_curvature(b: float) -> tuple[float, float]:
        probs = torch.softmax(b * centred, -1)
        mean = (probs * centred).sum(-1)
        variance = (probs * (centred - mean.unsqueeze(-1)) ** 2).sum(-1)
        return (mean - label_logit).mean().item(), variance.mean().item()

    low, high = 1.0 / high_t, 1.0 / low_t
    if slope_and_curvature(low)[0] >= 0:
        return None, "high"  # NLL rises from the smallest b on: it falls as T grows
    if slope_and_curvature(high)[0] <= 0:
        return None, "low"  # NLL still falls at the largest b: it falls as T -> 0
    b = min(max(1.0, low), high)
    for _ in range(_MAX_STEPS):
        slope, curvature = slope_and_curvature(b)
        if slope == 0:
            break
        if slope < 0:
            low = b
        else:
            high = b
        newton = b - slope / curvature if curvature > 0 else math.nan
        if abs(newton - b) <= 4 * torch.finfo(torch.float64).eps * b:
            b = newton  # converged: the step is at the rounding level of b
            break
        # Newton inside the bracket, else the bracket's geometric middle (it spans decades).
        b = newton if low < newton < high else math.sqrt(low * high)
    return 1.0 / b, ""

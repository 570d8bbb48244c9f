"""Temperature scaling (Guo et al., 2017): one scalar T > 0, calibrated logits ``z / T``.

T minimises the validation negative log-likelihood ``NLL(T) = mean_i [logsumexp(z_i / T) -
z_i[y_i] / T]``. In ``b = 1 / T`` the NLL is convex (a log-sum-exp of linear functions of b
minus a linear term), with derivative ``g(b) = mean_i (E_{softmax(b z_i)}[z_i] - z_i[y_i])`` and
second derivative ``mean_i Var_{softmax(b z_i)}[z_i] >= 0``: the minimiser is the one root of
the increasing ``g``, found by Newton's method safeguarded by bisection, all in float64 (exact
to rounding; no learning rate, no iteration budget to tune).

The search is restricted to ``T`` in ``bounds`` (default [0.01, 100]), which always contains
T = 1, so the fitted NLL is never above the unscaled one. When ``g`` keeps one sign over the
whole range (every validation sample right with a margin: NLL falls as T -> 0; or logits no
better than chance: it falls as T -> inf) the bound is returned.

Inputs are LOGITS (N, K), before any softmax. (TorchUncertainty's users report its scaler
assuming probabilities; here probabilities passed by mistake are refused.)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_float, check_sequence
from ._inputs import checked_logits

#: The default range searched for T.
TEMPERATURE_BOUNDS = (1e-2, 1e2)
_MAX_STEPS = 200


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, *, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """The temperature T in ``bounds`` minimising the NLL of ``softmax(logits / T)``.

    logits: (N, K) floating, finite (validation logits, never test); labels: (N,) integers in
    [0, K). Returns a Python float.
    """
    low, high = _checked_bounds(bounds)
    values, labels = checked_logits("logits", logits, labels)
    return _fit(values, labels, low, high)


def nll_at_temperature(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """``mean_i -log softmax(logits_i / T)[labels_i]`` in float64: (N, K), (N,) -> float."""
    temperature = check_float("temperature", temperature, minimum=0.0, min_inclusive=False)
    values, labels = checked_logits("logits", logits, labels)
    return _nll(values / temperature, labels)


class TemperatureScaler(nn.Module):
    """``z -> z / T`` on logits of any shape (..., K); T is a float64 buffer (``state_dict``).

    ``TemperatureScaler.fit(val_logits, val_labels)`` fits it (see ``fit_temperature``).
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        temperature = check_float("temperature", temperature, minimum=0.0, min_inclusive=False)
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))

    @classmethod
    def fit(cls, logits: torch.Tensor, labels: torch.Tensor, **options) -> TemperatureScaler:
        """A scaler with ``fit_temperature(logits, labels, **options)``."""
        return cls(fit_temperature(logits, labels, **options))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.6g}"


def _checked_bounds(bounds) -> tuple[float, float]:
    check_sequence("bounds", bounds)
    if len(bounds) != 2:
        raise ValueError(f"bounds must be (lowest, highest) temperatures, got {bounds!r}")
    low = check_float("bounds[0]", bounds[0], minimum=0.0, min_inclusive=False)
    high = check_float("bounds[1]", bounds[1], minimum=1.0)
    if low > 1.0:
        raise ValueError(f"bounds must contain T = 1 (the unscaled logits), got {bounds!r}")
    return low, high


def _nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(logits, -1) - picked).mean().item()


def _fit(logits: torch.Tensor, labels: torch.Tensor, low_t: float, high_t: float) -> float:
    """Root of the NLL derivative in b = 1/T on [1/high_t, 1/low_t] (module docstring)."""
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
        return high_t  # NLL rises from the smallest b on: the largest temperature
    if slope_and_curvature(high)[0] <= 0:
        return low_t  # NLL still falls at the largest b: the smallest temperature
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
    return 1.0 / b

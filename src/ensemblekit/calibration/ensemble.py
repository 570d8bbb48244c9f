"""Temperature scaling for ensembles of member logits (M, N, K): two orders, two results.

- ``"pool"`` (pool then calibrate; Rahaman & Thiery, 2021, find it the better order): the
  ensemble prediction ``log mean_m softmax(z_m)`` is treated as the logits of one model and a
  single temperature is fitted on it. Output: (1, B, K) calibrated log-probabilities, which any
  metric of this package reads as one member.
- ``"members"`` (calibrate then pool): one temperature per member, each fitted on that member's
  own validation NLL; the output keeps the members, (M, B, K) logits ``z_m / T_m``, and the
  usual pooling (softmax per member, then the mean) follows.

Either way the output is member logits, so ``evaluate_predictions(scaler(member_logits),
labels)`` gives every metric of the calibrated ensemble. Inputs are LOGITS.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_choice, check_tensor
from ._inputs import checked_logits
from .temperature import TEMPERATURE_BOUNDS, _checked_bounds, _fit

#: The ways ``fit_ensemble_temperature`` can calibrate an ensemble.
ENSEMBLE_MODES = ("pool", "members")


def pooled_log_probs(member_logits: torch.Tensor) -> torch.Tensor:
    """``log mean_m softmax(z_m)``: (M, B, K) logits -> (B, K) float64, stable (no log of a
    probability: a logsumexp over members of the log-softmaxes)."""
    log_probs = torch.log_softmax(member_logits.to(torch.float64), -1)
    return torch.logsumexp(log_probs, 0) - math.log(member_logits.shape[0])


class EnsembleTemperatureScaler(nn.Module):
    """Calibrates member logits (M, B, K): ``"pool"`` -> (1, B, K), ``"members"`` -> (M, B, K).

    ``temperatures``: float64 buffer, (1,) for "pool", (M,) for "members" (``state_dict``).
    """

    def __init__(self, temperatures: torch.Tensor, mode: str = "pool"):
        super().__init__()
        self.mode = check_choice("mode", mode, ENSEMBLE_MODES)
        check_tensor("temperatures", temperatures, ndim=1)
        if mode == "pool" and temperatures.numel() != 1:
            raise ValueError(f"mode 'pool' has one temperature, got {temperatures.numel()}")
        if not temperatures.is_floating_point() or not bool((temperatures > 0).all()) or \
                not bool(torch.isfinite(temperatures).all()):
            raise ValueError(
                f"temperatures must be finite and > 0, got {temperatures.tolist()}")
        self.register_buffer("temperatures", temperatures.detach().to(torch.float64).clone())

    @classmethod
    def fit(cls, member_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "pool",
            bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> EnsembleTemperatureScaler:
        """Fit on validation member logits (M, N, K) and labels (N,) (module docstring)."""
        return cls(fit_ensemble_temperature(member_logits, labels, mode=mode, bounds=bounds),
                   mode)

    def forward(self, member_logits: torch.Tensor) -> torch.Tensor:
        if member_logits.ndim != 3:
            raise ValueError(f"member_logits must have shape (M, B, K), got "
                             f"{tuple(member_logits.shape)}")
        if self.mode == "pool":
            return (pooled_log_probs(member_logits) / self.temperatures).unsqueeze(0)
        if member_logits.shape[0] != self.temperatures.numel():
            raise ValueError(
                f"this scaler holds {self.temperatures.numel()} member temperatures, got "
                f"member_logits for {member_logits.shape[0]} members")
        return member_logits / self.temperatures.to(member_logits.dtype).view(-1, 1, 1)

    def extra_repr(self) -> str:
        temperatures = [round(t, 6) for t in self.temperatures.tolist()]
        return f"mode={self.mode!r}, temperatures={temperatures}"


def fit_ensemble_temperature(
    member_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "pool",
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
) -> torch.Tensor:
    """Temperatures for member logits (M, N, K) and labels (N,): (1,) float64 for ``"pool"``
    (fitted on ``pooled_log_probs``), (M,) for ``"members"`` (one per member)."""
    mode = check_choice("mode", mode, ENSEMBLE_MODES)
    low, high = _checked_bounds(bounds)
    values, labels = checked_logits("member_logits", member_logits, labels, members=True)
    targets = [pooled_log_probs(values)] if mode == "pool" else list(values)
    return torch.tensor([_fit(target, labels, low, high) for target in targets],
                        dtype=torch.float64)

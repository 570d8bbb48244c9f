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

Each temperature follows the rule of :mod:`.identification`: one the validation data do not
identify is 1 (not applied), its ``fitted`` entry False and its ``reasons`` entry saying why,
with a :class:`~.identification.TemperatureNotIdentifiedWarning` naming the members concerned.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_choice, check_tensor
from ._inputs import checked_logits
from ._solver import checked_bounds
from .identification import (
    MIN_VALIDATION_ERRORS,
    TemperatureFit,
    check_min_errors,
    checked_outcome,
    identified_temperature,
    warn_not_fitted,
)
from .temperature import TEMPERATURE_BOUNDS

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
    ``fitted`` (list of bools) and ``reasons`` (list of str or None), one per temperature: which
    temperatures the validation data identified, and why the others are 1 (default: all
    fitted). Both travel in ``scaler_metadata``.
    """

    def __init__(self, temperatures: torch.Tensor, mode: str = "pool", *,
                 fitted: list[bool] | None = None, reasons: list[str | None] | None = None):
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
        count = temperatures.numel()
        fitted = [True] * count if fitted is None else list(fitted)
        reasons = [None] * count if reasons is None else list(reasons)
        if len(fitted) != count or len(reasons) != count:
            raise ValueError(f"fitted and reasons need one entry per temperature ({count}), got "
                             f"{len(fitted)} and {len(reasons)}")
        outcomes = [checked_outcome(*pair) for pair in zip(fitted, reasons, strict=True)]
        self.fitted = [flag for flag, _ in outcomes]
        self.reasons = [reason for _, reason in outcomes]

    @classmethod
    def fit(cls, member_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "pool",
            bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
            min_errors: int = MIN_VALIDATION_ERRORS) -> EnsembleTemperatureScaler:
        """Fit on validation member logits (M, N, K) and labels (N,) (module docstring)."""
        fits = _checked_fits(member_logits, labels, mode, bounds, min_errors)
        return cls.from_fits(fits, mode)

    @classmethod
    def from_fits(cls, fits: list[TemperatureFit], mode: str) -> EnsembleTemperatureScaler:
        """The scaler of ``ensemble_temperature_fits``' outcomes."""
        return cls(torch.tensor([fit.temperature for fit in fits], dtype=torch.float64), mode,
                   fitted=[fit.fitted for fit in fits], reasons=[fit.reason for fit in fits])

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
        return f"mode={self.mode!r}, temperatures={temperatures}, fitted={self.fitted}"


def ensemble_temperature_fits(
    member_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "pool",
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, min_errors: int = MIN_VALIDATION_ERRORS,
) -> list[TemperatureFit]:
    """One :class:`~.identification.TemperatureFit` for ``"pool"`` (on ``pooled_log_probs``),
    one per member for ``"members"``: member logits (M, N, K), labels (N,). Temperatures the
    data do not identify are 1, with the reason and one warning for all of them."""
    return _checked_fits(member_logits, labels, mode, bounds, min_errors)


def fit_ensemble_temperature(
    member_logits: torch.Tensor, labels: torch.Tensor, *, mode: str = "pool",
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, min_errors: int = MIN_VALIDATION_ERRORS,
) -> torch.Tensor:
    """Temperatures for member logits (M, N, K) and labels (N,): (1,) float64 for ``"pool"``
    (fitted on ``pooled_log_probs``), (M,) for ``"members"`` (one per member); 1 for those the
    data do not identify (``ensemble_temperature_fits`` says why)."""
    fits = _checked_fits(member_logits, labels, mode, bounds, min_errors)
    return torch.tensor([fit.temperature for fit in fits], dtype=torch.float64)


def _checked_fits(member_logits, labels, mode, bounds, min_errors) -> list[TemperatureFit]:
    """The public fits' common body; warns on behalf of the public function's caller."""
    mode = check_choice("mode", mode, ENSEMBLE_MODES)
    low, high = checked_bounds(bounds)
    min_errors = check_min_errors(min_errors)
    values, labels = checked_logits("member_logits", member_logits, labels, members=True)
    targets = [pooled_log_probs(values)] if mode == "pool" else list(values)
    fits = [identified_temperature(target, labels, low, high, min_errors) for target in targets]
    warn_not_fitted([fit.reason for fit in fits],
                    f"ensemble temperature scaling ({mode!r} mode) not applied (T = 1)",
                    stacklevel=3)
    return fits

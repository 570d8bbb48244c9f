"""Temperature scaling (Guo et al., 2017): one scalar T > 0, calibrated logits ``z / T``.

T minimises the validation negative log-likelihood ``NLL(T) = mean_i [logsumexp(z_i / T) -
z_i[y_i] / T]``, a convex function of ``b = 1 / T`` solved exactly (:mod:`._solver`).

The search is restricted to ``T`` in ``bounds`` (default [0.01, 100]), which always contains
T = 1, so a fitted NLL is never above the unscaled one. **A temperature the validation data do
not identify is not applied**: when the minimiser sits at a bound (every validation example
right with a margin: the NLL falls as T -> 0; logits no better than chance: it falls as T ->
inf), when the split holds fewer than ``min_errors`` errors, or when the fit does not beat the
uniform prediction (:mod:`.identification`), the fit returns T = 1 with the reason and warns
(:class:`~.identification.TemperatureNotIdentifiedWarning`); never the bound.

``fit_temperature`` returns the float; ``temperature_fit`` the whole outcome
(:class:`~.identification.TemperatureFit`: temperature, fitted, reason, errors); a
:class:`TemperatureScaler` keeps ``fitted`` and ``reason`` beside T (and in its saved
metadata, :mod:`.storage`).

Inputs are LOGITS (N, K), before any softmax. (TorchUncertainty's users report its scaler
assuming probabilities; here probabilities passed by mistake are refused.)
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_float
from ._inputs import checked_logits
from ._solver import checked_bounds, mean_nll
from .identification import (
    MIN_VALIDATION_ERRORS,
    TemperatureFit,
    check_min_errors,
    checked_outcome,
    identified_temperature,
    warn_not_fitted,
)

#: The default range searched for T.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def temperature_fit(
    logits: torch.Tensor, labels: torch.Tensor, *,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, min_errors: int = MIN_VALIDATION_ERRORS,
) -> TemperatureFit:
    """The temperature in ``bounds`` minimising the NLL of ``softmax(logits / T)``, if the
    validation data identify it, else T = 1 with ``fitted=False``, the reason and a
    :class:`~.identification.TemperatureNotIdentifiedWarning` (module docstring).

    logits: (N, K) floating, finite (validation logits, never test); labels: (N,) integers in
    [0, K); ``min_errors``: the least number of misclassified validation examples a T is
    fitted on (default 2, :data:`~.identification.MIN_VALIDATION_ERRORS`).
    """
    return _checked_fit(logits, labels, bounds, min_errors)


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, *,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, min_errors: int = MIN_VALIDATION_ERRORS,
) -> float:
    """``temperature_fit(logits, labels, ...).temperature``: the fitted T as a Python float,
    1.0 (with a warning saying why) when the validation data do not identify it.

    logits: (N, K) floating, finite (validation logits, never test); labels: (N,) integers in
    [0, K).
    """
    return _checked_fit(logits, labels, bounds, min_errors).temperature


def _checked_fit(logits, labels, bounds, min_errors) -> TemperatureFit:
    """The public fits' common body; warns on behalf of the public function's caller."""
    low, high = checked_bounds(bounds)
    min_errors = check_min_errors(min_errors)
    values, labels = checked_logits("logits", logits, labels)
    fit = identified_temperature(values, labels, low, high, min_errors)
    warn_not_fitted([fit.reason], "temperature scaling not applied (T = 1)", stacklevel=3)
    return fit


def nll_at_temperature(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """``mean_i -log softmax(logits_i / T)[labels_i]`` in float64: (N, K), (N,) -> float."""
    temperature = check_float("temperature", temperature, minimum=0.0, min_inclusive=False)
    values, labels = checked_logits("logits", logits, labels)
    return mean_nll(values / temperature, labels)


class TemperatureScaler(nn.Module):
    """``z -> z / T`` on logits of any shape (..., K); T is a float64 buffer (``state_dict``).

    ``TemperatureScaler.fit(val_logits, val_labels)`` fits it (see ``temperature_fit``);
    ``fitted`` says whether the validation data identified T (else T = 1 and ``reason`` says
    why); both travel in ``scaler_metadata``.
    """

    def __init__(self, temperature: float = 1.0, *, fitted: bool = True,
                 reason: str | None = None):
        super().__init__()
        temperature = check_float("temperature", temperature, minimum=0.0, min_inclusive=False)
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))
        self.fitted, self.reason = checked_outcome(fitted, reason)

    @classmethod
    def fit(cls, logits: torch.Tensor, labels: torch.Tensor, *,
            bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
            min_errors: int = MIN_VALIDATION_ERRORS) -> TemperatureScaler:
        """A scaler with ``temperature_fit(logits, labels, bounds=..., min_errors=...)``."""
        fit = _checked_fit(logits, labels, bounds, min_errors)
        return cls(fit.temperature, fitted=fit.fitted, reason=fit.reason)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature.to(logits.dtype)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.6g}, fitted={self.fitted}"


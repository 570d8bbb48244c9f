"""Post-hoc calibration of logits, fitted on a validation split (never on test).

Every scaler takes LOGITS (before any softmax) and returns logits; probabilities passed by
mistake are refused. Fitted scalers are small ``nn.Module``s whose numbers are float64 buffers.

- temperature: ``fit_temperature(logits (N, K), labels (N,)) -> float``, ``temperature_fit``
  (-> ``TemperatureFit``: T, fitted, reason, errors), ``TemperatureScaler`` (one T; exact 1-D
  convex solve), ``nll_at_temperature``;
- identification: when the validation data identify T (``MIN_VALIDATION_ERRORS``); a fit they
  do not identify returns T = 1, ``fitted=False`` and the reason, with a
  ``TemperatureNotIdentifiedWarning`` -- never the search bound;
- vector: ``fit_vector_scaling -> (scale (K,), bias (K,))``, ``VectorScaler`` (L-BFGS);
- ensemble: ``fit_ensemble_temperature(member_logits (M, N, K), labels)``,
  ``ensemble_temperature_fits`` and
  ``EnsembleTemperatureScaler`` with mode "pool" (temperature on the log of the mean member
  probability) or "members" (one temperature per member, then pooled), ``pooled_log_probs``;
- storage: ``scaler_metadata`` / ``scaler_from_metadata`` (a scaler as JSON in a checkpoint's
  metadata; ``ensemblekit.checkpoint.load_scaler`` reads it back);
- evaluation: ``temperature_scaled_metrics`` (validation and test member logits -> every
  metric of the scaled test predictions).

Regression (member means and variances (M, N, D), fitted on the validation split):

- variance: ``fit_variance_scaling -> VarianceScaling`` (one scale s, sigma -> s sigma, closed
  form; ``fitted`` / ``reason``: identified or not applied), ``VarianceScaler``,
  ``scale_members``;
- conformal: ``conformal_intervals -> ConformalIntervals`` (split conformal, scores normalised
  by sigma; test coverage beside the nominal), ``fit_conformal``, ``conformal_quantile``.
"""

from .conformal import (
    ConformalIntervals,
    conformal_intervals,
    conformal_quantile,
    fit_conformal,
)
from .ensemble import (
    ENSEMBLE_MODES,
    EnsembleTemperatureScaler,
    ensemble_temperature_fits,
    fit_ensemble_temperature,
    pooled_log_probs,
)
from .evaluation import temperature_scaled_metrics
from .identification import (
    MIN_VALIDATION_ERRORS,
    TemperatureFit,
    TemperatureNotIdentifiedWarning,
)
from .storage import scaler_from_metadata, scaler_metadata
from .temperature import (
    TEMPERATURE_BOUNDS,
    TemperatureScaler,
    fit_temperature,
    nll_at_temperature,
    temperature_fit,
)
from .variance import (
    MIN_VALIDATION_POINTS,
    VARIANCE_SCALE_BOUNDS,
    VarianceScaler,
    VarianceScaling,
    fit_variance_scaling,
    scale_members,
)
from .vector import VectorScaler, fit_vector_scaling

__all__ = [
    "ENSEMBLE_MODES",
    "MIN_VALIDATION_ERRORS",
    "MIN_VALIDATION_POINTS",
    "TEMPERATURE_BOUNDS",
    "VARIANCE_SCALE_BOUNDS",
    "ConformalIntervals",
    "EnsembleTemperatureScaler",
    "TemperatureFit",
    "TemperatureNotIdentifiedWarning",
    "TemperatureScaler",
    "VarianceScaler",
    "VarianceScaling",
    "VectorScaler",
    "conformal_intervals",
    "conformal_quantile",
    "ensemble_temperature_fits",
    "fit_conformal",
    "fit_ensemble_temperature",
    "fit_temperature",
    "fit_variance_scaling",
    "fit_vector_scaling",
    "nll_at_temperature",
    "pooled_log_probs",
    "scale_members",
    "scaler_from_metadata",
    "scaler_metadata",
    "temperature_fit",
    "temperature_scaled_metrics",
]

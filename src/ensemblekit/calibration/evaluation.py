"""The metrics of a temperature-scaled ensemble: fit on validation, evaluate on test.

One call for a benchmark's "+TS" row: given a run's validation member logits and its test
member logits, fit the ensemble temperature on validation only and return every metric of
``evaluate_predictions`` on the scaled test (and OOD) logits, plus what was fitted -- and,
for every temperature, whether the validation data identified it (a temperature they do not
identify is 1, not the search bound: :mod:`.identification`).
"""

from __future__ import annotations

import torch

from .._validation import check_tensor
from ..metrics import evaluate_predictions
from .ensemble import EnsembleTemperatureScaler, ensemble_temperature_fits, pooled_log_probs
from .identification import MIN_VALIDATION_ERRORS
from .temperature import TEMPERATURE_BOUNDS


def temperature_scaled_metrics(
    val_member_logits: torch.Tensor,
    val_labels: torch.Tensor,
    test_member_logits: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    ood_member_logits: torch.Tensor | None = None,
    mode: str = "pool",
    n_bins: int = 15,
    bounds: tuple[float, float] = TEMPERATURE_BOUNDS,
    min_errors: int = MIN_VALIDATION_ERRORS,
) -> dict:
    """``evaluate_predictions`` of the test set after temperature scaling fitted on validation.

    val_member_logits (M, N_val, K) with val_labels (N_val,); test_member_logits (M, N, K) with
    test_labels (N,); optional ood_member_logits (M, N_ood, K), scaled the same way. ``mode``:
    "pool" (default: one temperature on the ensemble's log mean probability, so the
    validation NLL can only fall; the scaled prediction is one member, and the OOD scores that
    compare members are None) or "members" (one temperature per member, then the usual pooling;
    see ``ensemblekit.calibration.ensemble``).

    Returns the ``evaluate_predictions`` dict with one more key, ``"calibration"``: ``{"mode",
    "temperatures": [T, ...], "fitted": [bool, ...], "reasons": [str or None, ...],
    "validation_errors": [int, ...], "n_validation", "validation_nll": {"before", "after"}}``
    (the lists: one entry per temperature, i.e. one in "pool" mode, one per member in
    "members" mode; a temperature the validation data do not identify is 1, its ``fitted``
    False and its reason given, with a ``TemperatureNotIdentifiedWarning``; the errors are
    those of the predictions each temperature scales; validation NLL of the pooled prediction,
    natural log, no probability floor).
    """
    check_tensor("val_member_logits", val_member_logits, ndim=3)
    for name, logits in (("test_member_logits", test_member_logits),
                         ("ood_member_logits", ood_member_logits)):
        if logits is not None:
            _check_like_validation(name, logits, val_member_logits)
    fits = ensemble_temperature_fits(val_member_logits, val_labels, mode=mode, bounds=bounds,
                                     min_errors=min_errors)
    scaler = EnsembleTemperatureScaler.from_fits(fits, mode)
    scaled_ood = None if ood_member_logits is None else scaler(ood_member_logits)
    results = evaluate_predictions(scaler(test_member_logits), test_labels,
                                   ood_member_logits=scaled_ood, n_bins=n_bins)
    labels = val_labels.long().to(val_member_logits.device)
    results["calibration"] = {
        "mode": mode,
        "temperatures": scaler.temperatures.tolist(),
        "fitted": [fit.fitted for fit in fits],
        "reasons": [fit.reason for fit in fits],
        "validation_errors": [fit.n_errors for fit in fits],
        "n_validation": int(labels.numel()),
        "validation_nll": {"before": _pooled_nll(val_member_logits, labels),
                           "after": _pooled_nll(scaler(val_member_logits), labels)},
    }
    return results


def _check_like_validation(name: str, logits, validation: torch.Tensor) -> None:
    check_tensor(name, logits, ndim=3)
    if (logits.shape[0], logits.shape[-1]) != (validation.shape[0], validation.shape[-1]):
        raise ValueError(
            f"{name} must have the validation's members and classes: expected "
            f"(M={validation.shape[0]}, N, K={validation.shape[-1]}), got {tuple(logits.shape)}")


def _pooled_nll(member_logits: torch.Tensor, labels: torch.Tensor) -> float:
    log_probs = pooled_log_probs(member_logits)
    return -log_probs.gather(-1, labels.unsqueeze(-1)).mean().item()

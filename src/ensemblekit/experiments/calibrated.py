"""The "+TS" evaluation of a trained model: temperature fitted on validation, metrics on test.

``calibrated_evaluation(model, data, seed=...)`` predicts the validation split, the clean test
set and the OOD set once each (member logits, the same passes the raw evaluation would draw for
MC-Dropout with the same seed), fits the ensemble temperature on validation only
(:func:`ensemblekit.calibration.temperature_scaled_metrics`) and returns a record shaped like
:func:`ensemblekit.experiments.pipeline.evaluate`'s clean part: ``{"test": {metric: value},
"ood": {score: {...}} (with an OOD set), "calibration": {"mode", "temperatures",
"n_validation", "validation_nll": {"before", "after"}}}``. Shifted sets are not scaled here.
"""

from __future__ import annotations

from ..calibration import temperature_scaled_metrics
from .pipeline import ExperimentData, _scalars, member_logits, predict_split


def calibrated_evaluation(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                          num_samples: int | None = None, mode: str = "pool") -> dict:
    """Temperature-scaled clean-test (and OOD) metrics of ``model`` (module docstring).

    Needs ``data.validation`` (load the data with its training split: the validation part is
    carved from it). ``mode``: "pool" or "members" (see ``ensemblekit.calibration``).
    """
    if data.validation is None:
        raise ValueError(
            "calibration needs a validation split, and this data has none: load it with "
            "with_train=True and a validation_fraction above 0"
        )
    options = dict(batch_size=batch_size, num_samples=num_samples, seed=seed)
    val_logits, val_labels = predict_split(model, data.validation, data.name, **options)
    test_logits, test_labels = predict_split(model, data.test, data.name, **options)
    ood_logits = None if data.ood is None else member_logits(model, data.ood, data.name,
                                                             **options)
    results = temperature_scaled_metrics(val_logits, val_labels, test_logits, test_labels,
                                         ood_member_logits=ood_logits, mode=mode)
    record = {"test": _scalars(results), "calibration": results["calibration"]}
    if ood_logits is not None:
        record["ood"] = results["ood"]
    return record

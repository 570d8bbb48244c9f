"""The "+TS" evaluation of a trained model: temperature fitted on validation, metrics on test.

:func:`calibrated_record` takes the member logits of the validation split, the clean test set
and the OOD set that :func:`~ensemblekit.experiments.protocol.predict_splits` produced once
(the same passes the raw evaluation reads), fits the ensemble temperature on validation only
(:func:`ensemblekit.calibration.temperature_scaled_metrics`) and returns a record shaped like
the clean part of :func:`~ensemblekit.experiments.protocol.protocol_record`'s: ``{"test":
{metric: value}, "ood": {score: {...}} (with an OOD set), "calibration": {"mode",
"temperatures", "n_validation", "validation_nll": {"before", "after"}}}``. Shifted sets are not
scaled here. :func:`calibrated_evaluation` predicts those splits itself.
"""

from __future__ import annotations

from ..calibration import temperature_scaled_metrics
from .protocol import SplitOutputs, predict_splits, scalars
from .splits import ExperimentData

_NO_VALIDATION = ("calibration needs a validation split, and this data has none: load it with "
                  "with_train=True and a validation_fraction above 0")


def calibrated_evaluation(model, data: ExperimentData, *, seed: int, batch_size: int = 500,
                          num_samples: int | None = None, mode: str = "pool") -> dict:
    """Temperature-scaled clean-test (and OOD) metrics of ``model`` (module docstring).

    Needs ``data.validation`` (load the data with its training split: the validation part is
    carved from it). ``mode``: "pool" or "members" (see ``ensemblekit.calibration``).
    """
    if data.validation is None:
        raise ValueError(_NO_VALIDATION)
    outputs = predict_splits(model, data, seed=seed, batch_size=batch_size,
                             num_samples=num_samples, shift=False)
    return calibrated_record(outputs, mode=mode)


def calibrated_record(outputs: SplitOutputs, *, mode: str = "pool") -> dict:
    """The "+TS" record (module docstring) from one model's split outputs."""
    if outputs.validation is None:
        raise ValueError(_NO_VALIDATION)
    validation, test = outputs.validation, outputs.test
    ood_logits = None if outputs.ood is None else outputs.ood.logits
    results = temperature_scaled_metrics(validation.logits, validation.labels, test.logits,
                                         test.labels, ood_member_logits=ood_logits, mode=mode)
    record = {"test": scalars(results), "calibration": results["calibration"]}
    if ood_logits is not None:
        record["ood"] = results["ood"]
    return record

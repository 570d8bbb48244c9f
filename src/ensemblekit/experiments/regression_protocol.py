"""The regression protocol on one trained model: one inference pass per split, every metric in
the targets' original units, variance scaling and conformal intervals fitted on validation.

What a run reads (:class:`RegressionData`, :func:`load_regression_data`): a regression set's
training part less its validation part (a fixed random share, :func:`~ensemblekit.data.
split_validation`), its test part, and the statistics that undo the standardisation -- those of
the training part, as the UCI protocol standardises (:mod:`ensemblekit.data.regression`). A UCI
set is read split by split (``"train-<i>"`` / ``"test-<i>"``).

:func:`predict_gaussian` pushes a split through the model once, batch by batch through
:func:`~ensemblekit.methods.predict_members` (seeded, modes restored; the classification loop
:func:`ensemblekit.predict.predict` streams logits only), and keeps the
members' Gaussians. :func:`regression_record` turns the test and validation outputs into the
run's record:

- ``"test"``: the scalars of :func:`~ensemblekit.metrics.evaluate_regression` in original units
  (RMSE, NLL of the mixture and of the moment-matched Gaussian, CRPS, PICP / MPIW at 68 % and
  95 %, the quantile calibration error, ENCE, AUSE, Spearman, aleatoric and epistemic means);
- ``"curves"``: the calibration curve, the sparsification curves (model and oracle) and the
  binned RMSE against the root mean predicted variance (:func:`~ensemblekit.metrics.
  sigma_error_bins`), for the figures;
- ``"validation"``: RMSE, NLL, CRPS and calibration error on the validation split;
- ``"variance_scaled"`` ("+VS"): the scale ``s`` fitted on validation (:func:`~ensemblekit.
  calibration.fit_variance_scaling`, with its "identified or not applied" outcome) and the test
  metrics with it applied;
- ``"conformal"``: split-conformal intervals at ``1 - alpha`` fitted on validation, their
  empirical test coverage beside the nominal one and the plain Gaussian interval's.

And the per-input values the report's paired bootstrap resamples (:func:`~ensemblekit.metrics.
regression_per_sample` on the test set).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .. import data as datasets
from .._validation import check_int, check_seed
from ..calibration import conformal_intervals, fit_variance_scaling, scale_members
from ..data.regression import Standardization
from ..members import GaussianMembers
from ..methods import predict_members
from ..metrics import (
    evaluate_regression,
    moment_match,
    regression_per_sample,
    sigma_error_bins,
)
from ..predict import member_samples
from ..runtime import model_device
from .config import Settings
from .protocol import scalars

#: The validation metrics kept per run (the ensemble's, in original units).
REGRESSION_VALIDATION_METRICS = ("rmse", "nll", "crps", "calibration_error")
#: The curves kept per run for the figures.
CURVES = ("calibration_curve", "sparsification")


@dataclass
class RegressionData:
    """One split of a regression set as a run reads it: ``(features (N, F), targets (N, D))``
    float32 tensors, standardised; ``standardization`` undoes it (the training part's)."""

    name: str
    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    standardization: Standardization
    split: int | None = None


def load_regression_data(settings: Settings, split: int | None = None) -> RegressionData:
    """The training part (less its ``settings.validation_fraction`` validation share) and the
    test part of ``settings.dataset``; ``split``: a UCI split index (None: ``"train"`` /
    ``"test"``)."""
    names = ("train", "test") if split is None else (f"train-{split}", f"test-{split}")
    train, test = (datasets.load_dataset(settings.dataset, name, data_dir=settings.data_dir,
                                         download=settings.download) for name in names)
    kept, validation = datasets.split_validation(datasets.as_tensors(train),
                                                 settings.validation_fraction)
    return RegressionData(name=settings.dataset, train=kept, validation=validation,
                          test=datasets.as_tensors(test),
                          standardization=train.standardization, split=split)


def predict_gaussian(model, features: torch.Tensor, *, seed: int, batch_size: int = 500,
                     num_samples: int | None = None) -> GaussianMembers:
    """The members' Gaussians of ``features`` (N, F): means and variances (M, N, D) float64 on
    the CPU, in the model's (standardised) units; ``batch_size`` inputs at a time through
    :func:`~ensemblekit.methods.predict_members` (eval mode, modes restored), under
    ``torch.manual_seed(seed)`` in a forked generator that leaves the caller's untouched (as
    the classification loop, :func:`ensemblekit.predict.predict`; MC-Dropout draws its masks
    from its own generator, so its members do not depend on ``seed`` or ``batch_size``).
    ``num_samples``: MC-Dropout's passes (other methods have their fixed members)."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    device = model_device(model)
    samples = member_samples(model, num_samples)
    means, variances = [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.no_grad():
        torch.manual_seed(check_seed(seed))
        for start in range(0, features.shape[0], batch_size):
            batch = features[start:start + batch_size].to(device)
            members = predict_members(model, batch, num_samples=samples)
            means.append(members.means.double().cpu())
            variances.append(members.variances.double().cpu())
    return GaussianMembers(torch.cat(means, dim=1), torch.cat(variances, dim=1))


def regression_record(test: GaussianMembers, test_targets: torch.Tensor,
                      validation: GaussianMembers | None,
                      validation_targets: torch.Tensor | None, units: Standardization, *,
                      alpha: float = 0.05) -> tuple[dict, dict]:
    """The run's record (module docstring) and the test set's per-input values, from the
    members' Gaussians in standardised units (M, N, D), the standardised targets (N, D) and
    the training part's statistics ``units``."""
    members = units.to_original(*test)
    targets = units.original_targets(test_targets)
    metrics = evaluate_regression(*members, targets)
    record = {"test": scalars(metrics), "curves": _curves(metrics, members, targets)}
    if validation is not None:
        val_members = units.to_original(*validation)
        val_targets = units.original_targets(validation_targets)
        val_metrics = evaluate_regression(*val_members, val_targets)
        record["validation"] = {key: val_metrics[key] for key in REGRESSION_VALIDATION_METRICS}
        record["variance_scaled"] = _variance_scaled(val_members, val_targets, members, targets)
        record["conformal"] = _conformal(val_members, val_targets, members, targets, alpha)
    return record, regression_per_sample(*members, targets)


def _variance_scaled(val_members, val_targets, members, targets) -> dict:
    """"+VS": ``s`` fitted on validation; the test metrics with it (only when identified:
    a scale that is not identified is not applied, so the +VS row would repeat the raw one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the outcome is recorded, not printed
        fit = fit_variance_scaling(*val_members, val_targets)
    result = {"calibration": fit.as_dict()}
    if fit.fitted:
        scaled = scale_members(*members, fit.scale)
        result["test"] = scalars(evaluate_regression(*scaled, targets))
    return result


def _conformal(val_members, val_targets, members, targets, alpha: float) -> dict:
    try:
        intervals = conformal_intervals(*val_members, val_targets, *members, targets,
                                        alpha=alpha)
    except ValueError as error:  # too few validation inputs for a finite interval
        return {"alpha": alpha, "nominal": 1 - alpha, "coverage": None, "reason": str(error)}
    return intervals.summary()


def _curves(metrics: dict, members: GaussianMembers, targets: torch.Tensor) -> dict:
    moments = moment_match(*members)
    curves = {key: metrics[key] for key in CURVES}
    curves["sigma_error"] = sigma_error_bins(moments.mean, moments.variance, targets,
                                             n_bins=metrics["n_bins"],
                                             binning=metrics["ence_binning"])
    return curves

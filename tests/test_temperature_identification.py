"""A temperature the validation data do not identify is not applied: T = 1, fitted False, the
reason and a warning, for every scaler and for the "+TS" record -- never the search bound."""

from __future__ import annotations

import warnings

import pytest
import torch

import ensemblekit as ek
from ensemblekit.calibration import (
    MIN_VALIDATION_ERRORS,
    EnsembleTemperatureScaler,
    TemperatureNotIdentifiedWarning,
    TemperatureScaler,
    VectorScaler,
    ensemble_temperature_fits,
    fit_ensemble_temperature,
    fit_temperature,
    fit_vector_scaling,
    nll_at_temperature,
    scaler_from_metadata,
    scaler_metadata,
    temperature_fit,
    temperature_scaled_metrics,
)
from ensemblekit.checkpoint import load_scaler
from test_calibration import calibrated_data


def separable(n=300, k=10, seed=0, margin=4.0):
    """Every example right with a margin: the NLL keeps falling as T -> 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 0.5
    return logits + margin * torch.nn.functional.one_hot(labels, k), labels


def chance(n=500, k=10, seed=1):
    """Logits that know nothing about the labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 3, torch.randint(0, k, (n,), generator=g)


def with_errors(count, n=300, k=10, seed=2):
    """``separable`` with the first ``count`` examples given another class's label."""
    logits, labels = separable(n, k, seed)
    labels = labels.clone()
    labels[:count] = (labels[:count] + 1) % k
    return logits, labels


CASES = {"separable": (separable, "T -> 0"), "chance": (chance, "no better than chance")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_unidentified_temperature_is_one_with_the_reason_and_a_warning(case):
    make, reason = CASES[case]
    logits, labels = make()
    with pytest.warns(TemperatureNotIdentifiedWarning, match=reason):
        fit = temperature_fit(logits, labels)
    assert (fit.temperature, fit.fitted) == (1.0, False) and reason in fit.reason
    assert fit.n_validation == len(labels)
    assert fit.n_errors == int((logits.argmax(-1) != labels).sum())
    assert fit.as_dict()["reason"] == fit.reason
    with pytest.warns(TemperatureNotIdentifiedWarning, match=reason):
        assert fit_temperature(logits, labels) == 1.0  # the float API: 1, never a bound
    with pytest.warns(TemperatureNotIdentifiedWarning):
        scaler = TemperatureScaler.fit(logits, labels)
    assert scaler.temperature.item() == 1.0 and not scaler.fitted and reason in scaler.reason
    assert torch.equal(scaler(logits), logits)
    with pytest.warns(TemperatureNotIdentifiedWarning, match="vector scaling"):
        vector = VectorScaler.fit(logits, labels)
    assert not vector.fitted and reason in vector.reason
    assert torch.equal(vector(logits.double()), logits.double())
    with pytest.warns(TemperatureNotIdentifiedWarning):
        scale, bias = fit_vector_scaling(logits, labels)
    assert torch.equal(scale, torch.ones(10, dtype=torch.float64)) and not bias.any()


def test_separable_split_would_have_hurt_the_test_set():
    # The case: a split without errors gave T = 0.01, and a test set with one error
    # paid for it. T = 1 keeps the test NLL of the raw model.
    logits, labels = separable(600)
    test_logits, test_labels = logits[300:], labels[300:].clone()
    test_labels[0] = (test_labels[0] + 1) % 10
    with pytest.warns(TemperatureNotIdentifiedWarning):
        fitted = fit_temperature(logits[:300], labels[:300])
    raw = nll_at_temperature(test_logits, test_labels, 1.0)
    assert nll_at_temperature(test_logits, test_labels, fitted) == raw
    assert nll_at_temperature(test_logits, test_labels, 1e-2) > 5 * raw  # the old bound


def test_fewer_errors_than_the_minimum_are_not_a_fit():
    assert MIN_VALIDATION_ERRORS == 2
    logits, labels = with_errors(1)
    with pytest.warns(TemperatureNotIdentifiedWarning, match="min_errors=2"):
        fit = temperature_fit(logits, labels)
    assert (fit.temperature, fit.fitted, fit.n_errors) == (1.0, False, 1)
    assert "that one example" in fit.reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lowered = temperature_fit(logits, labels, min_errors=1)  # the interior minimiser
        assert lowered.fitted and lowered.reason is None and lowered.temperature != 1.0
        two = temperature_fit(*with_errors(2))
    assert two.fitted and two.n_errors == 2


def test_an_identified_temperature_is_fitted_without_warning():
    logits, labels = calibrated_data(2000, seed=3)
    over = logits * 2.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = temperature_fit(over, labels)
        scaler = TemperatureScaler.fit(over, labels)
        vector = VectorScaler.fit(over, labels)
        ensemble = EnsembleTemperatureScaler.fit(over.unsqueeze(0).repeat(2, 1, 1), labels,
                                                 mode="members")
    assert fit.fitted and fit.reason is None and fit.n_errors > 100
    assert fit.temperature == pytest.approx(2.5, rel=0.1)
    assert nll_at_temperature(over, labels, fit.temperature) < nll_at_temperature(over, labels, 1)
    assert scaler.fitted and scaler.temperature.item() == fit.temperature
    assert vector.fitted and vector.reason is None
    assert ensemble.fitted == [True, True] and ensemble.reasons == [None, None]


def test_ensemble_members_mode_marks_each_member():
    good, labels = calibrated_data(300, seed=4)
    bad, _ = separable(300, seed=4)
    bad = bad - 4.0 * torch.nn.functional.one_hot(bad.argmax(-1), 10)  # wipe its own labels
    bad = bad + 6.0 * torch.nn.functional.one_hot(labels, 10)  # right on these, with margin
    member_logits = torch.stack([good * 2, bad]).float()
    with pytest.warns(TemperatureNotIdentifiedWarning, match="member 1: the validation NLL"):
        fits = ensemble_temperature_fits(member_logits, labels, mode="members")
    assert [fit.fitted for fit in fits] == [True, False]
    assert fits[1].temperature == 1.0 and fits[1].n_errors == 0
    with pytest.warns(TemperatureNotIdentifiedWarning):
        temperatures = fit_ensemble_temperature(member_logits, labels, mode="members")
    assert temperatures.tolist() == [fits[0].temperature, 1.0]
    with pytest.warns(TemperatureNotIdentifiedWarning):
        scaler = EnsembleTemperatureScaler.fit(member_logits, labels, mode="members")
    assert scaler.fitted == [True, False] and scaler.reasons[0] is None
    assert "fitted=[True, False]" in repr(scaler)


@pytest.mark.parametrize("mode", ["pool", "members"])
def test_the_ts_record_says_what_was_fitted(mode):
    logits, labels = separable(400, seed=5)
    members = torch.stack([logits, logits + 0.1]).float()
    with pytest.warns(TemperatureNotIdentifiedWarning):
        results = temperature_scaled_metrics(members[:, :200], labels[:200], members[:, 200:],
                                             labels[200:], mode=mode)
    calibration = results["calibration"]
    count = 1 if mode == "pool" else 2
    assert calibration["temperatures"] == [1.0] * count
    assert calibration["fitted"] == [False] * count
    assert all("T -> 0" in reason for reason in calibration["reasons"])
    assert calibration["validation_errors"] == [0] * count
    assert calibration["validation_nll"]["after"] == calibration["validation_nll"]["before"]
    good, good_labels = calibrated_data(800, seed=6)
    members = torch.stack([good * 2, good * 2 + 0.3]).float()
    results = temperature_scaled_metrics(members[:, :400], good_labels[:400], members[:, 400:],
                                         good_labels[400:], mode=mode)
    calibration = results["calibration"]
    assert calibration["fitted"] == [True] * count and calibration["reasons"] == [None] * count
    assert min(calibration["validation_errors"]) > 100
    assert calibration["validation_nll"]["after"] < calibration["validation_nll"]["before"]


def test_saving_a_scaler_keeps_whether_it_was_fitted(tmp_path):
    logits, labels = separable(100)
    with pytest.warns(TemperatureNotIdentifiedWarning):
        scalers = [TemperatureScaler.fit(logits, labels), VectorScaler.fit(logits, labels),
                   EnsembleTemperatureScaler.fit(logits.unsqueeze(0), labels, mode="members")]
    model = ek.build_model("mlp", "single", num_classes=10, in_channels=4, seed=0)
    for index, scaler in enumerate(scalers):
        metadata = scaler_metadata(scaler)
        path = tmp_path / f"model{index}.pt"
        ek.save(model, path, metadata={"calibration": metadata})
        reloaded = load_scaler(path)
        assert scaler_metadata(reloaded) == metadata
        if isinstance(scaler, EnsembleTemperatureScaler):
            assert reloaded.fitted == [False] and "T -> 0" in reloaded.reasons[0]
        else:
            assert reloaded.fitted is False and "T -> 0" in reloaded.reason
    # Metadata written before the fitted / reason entries existed reads as fitted.
    old = scaler_from_metadata({"kind": "temperature", "temperature": 1.5})
    assert old.fitted and old.reason is None
    old = scaler_from_metadata({"kind": "ensemble_temperature", "mode": "pool",
                                "temperatures": [2.0]})
    assert old.fitted == [True] and old.reasons == [None]


def test_bad_options_name_the_parameter():
    logits, labels = calibrated_data(50, k=3)
    for call in (lambda: fit_temperature(logits, labels, min_errors=-1),
                 lambda: TemperatureScaler.fit(logits, labels, min_errors=1.5),
                 lambda: fit_ensemble_temperature(logits.unsqueeze(0), labels, min_errors="2"),
                 lambda: fit_vector_scaling(logits, labels, min_errors=-3)):
        with pytest.raises(ValueError, match="min_errors"):
            call()
    with pytest.raises(ValueError, match="fitted must be True or False"):
        TemperatureScaler(1.0, fitted="no")
    with pytest.raises(ValueError, match="needs the reason"):
        TemperatureScaler(1.0, fitted=False)
    with pytest.raises(ValueError, match="one entry per temperature"):
        EnsembleTemperatureScaler(torch.ones(2), "members", fitted=[True])

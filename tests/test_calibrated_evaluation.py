"""`ensemblekit evaluate --calibrate`: a temperature fitted on validation, metrics on test."""

from __future__ import annotations

import json

import torch

from ensemblekit import checkpoint, cli
from ensemblekit.calibration import pooled_log_probs
from ensemblekit.experiments.calibrated import calibrated_evaluation
from ensemblekit.experiments.config import Settings
from ensemblekit.experiments.splits import load_experiment_data
from ensemblekit.metrics import evaluate_predictions
from ensemblekit.predict import predict


def test_evaluate_calibrate_adds_the_scaled_metrics(tmp_path, capsys):
    assert cli.main(["train", "--method", "single", "--epochs", "1", "--threads", "1",
                     "--out", str(tmp_path / "t")]) == 0
    path = tmp_path / "t" / "model.pt"
    assert cli.main(["evaluate", str(path), "--corruptions", "none", "--calibrate"]) == 0
    printed = capsys.readouterr().out
    assert "temperature-scaled (T = " in printed
    record = json.loads((tmp_path / "t" / "evaluation.json").read_text())
    scaled, fitted = record["calibrated"]["test"], record["calibrated"]["calibration"]
    assert fitted["mode"] == "pool" and len(fitted["temperatures"]) == 1
    assert fitted["n_validation"] == 250  # digits: a fifth of the 1258 training images
    assert fitted["validation_nll"]["after"] <= fitted["validation_nll"]["before"]
    # Independent recomputation: the same validation and test logits, scaled by hand.
    settings = Settings(dataset="digits", out=str(tmp_path / "t"))
    data = load_experiment_data(settings, with_train=True, log=lambda *_: None)
    model = checkpoint.load(path)
    validation = predict(model, data.validation, dataset="digits")
    test = predict(model, data.test, dataset="digits")
    val_logits, val_labels = validation.logits, validation.labels
    test_logits, test_labels = test.logits, test.labels
    temperature = fitted["temperatures"][0]
    by_hand = evaluate_predictions((pooled_log_probs(test_logits) / temperature).unsqueeze(0),
                                   test_labels)
    assert abs(scaled["nll"] - by_hand["nll"]) < 1e-9 and scaled["ece"] == by_hand["ece"]
    before = -torch.log_softmax(val_logits[0].double(), -1).gather(
        1, val_labels.unsqueeze(1)).mean().item()
    assert abs(fitted["validation_nll"]["before"] - before) < 1e-9
    assert record["calibrated"]["ood"]["mutual_information"]["auroc"] is None  # one member
    # The raw record is unchanged by the option.
    assert abs(record["test"]["nll"] - evaluate_predictions(test_logits, test_labels)["nll"]) < 1e-9


def test_calibrated_evaluation_needs_a_validation_split(tmp_path):
    settings = Settings(dataset="digits", out=str(tmp_path))
    data = load_experiment_data(settings, with_train=False, log=lambda *_: None)
    try:
        calibrated_evaluation(torch.nn.Identity(), data, seed=0)
    except ValueError as error:
        assert "validation split" in str(error)
    else:
        raise AssertionError("expected a ValueError")

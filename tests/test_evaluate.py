"""The evaluation pass on real digits: clean, corrupted and OOD (letters) in one call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ensemblekit.data import (
    Normalize,
    as_tensors,
    load_dataset,
    read_corrupted_folder,
    write_corrupted_folder,
)
from ensemblekit.evaluate import evaluate_model
from ensemblekit.methods import build_model, predict_members
from ensemblekit.metrics import OOD_SCORES, auroc, evaluate_predictions
from ensemblekit.train import TrainConfig, train_model

KINDS = ("gaussian_noise", "fog")



@pytest.fixture(scope="module")
def data():
    return {name: load_dataset(name, "test") for name in ("digits", "letters")}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    model = build_model("mlp", "deep_ensemble", num_classes=10, in_channels=1, input_size=8,
                        n=3, seed=0)
    config = TrainConfig(epochs=8, batch_size=64, lr=0.1, dataset="digits", progress=False)
    train_model(model, load_dataset("digits", "train"), config)
    return model


@pytest.fixture(scope="module")
def results(trained, data):
    torch.set_num_threads(1)
    return evaluate_model(trained, data["digits"], dataset="digits", corruptions=KINDS,
                          severities=(1, 5), ood_data=data["letters"], batch_size=100)


def test_result_layout(results):
    assert set(results) == {"test", "shift", "shift_mean", "shift_overall", "ood",
                            "inference_ms_per_sample", "arrays"}
    assert list(results["shift"]) == [1, 5]
    assert all(list(by_kind) == list(KINDS) for by_kind in results["shift"].values())
    assert set(results["ood"]) == set(OOD_SCORES)
    assert set(results["ood"]["msp"]) == {"auroc", "aupr", "aupr_in", "fpr95"}
    assert results["inference_ms_per_sample"] > 0


def test_values_are_sane_for_a_trained_ensemble(results, data):
    test = results["test"]
    assert test["n_samples"] == len(data["digits"]) and test["n_members"] == 3
    assert test["accuracy"] > 0.75
    assert 0 <= test["ece"] <= 1 and test["nll"] > 0
    # Strong noise hurts; the mean over kinds is the mean of the per-kind numbers.
    assert results["shift_mean"][5]["accuracy"] < test["accuracy"]
    for severity in (1, 5):
        mean = np.mean([results["shift"][severity][kind]["nll"] for kind in KINDS])
        assert results["shift_mean"][severity]["nll"] == pytest.approx(mean)
    overall = np.mean([results["shift"][s][k]["ece"] for s in (1, 5) for k in KINDS])
    assert results["shift_overall"]["ece"] == pytest.approx(overall)
    assert results["ood"]["msp"]["auroc"] > 0.6  # letters look less like digits than digits do


def test_arrays_match_the_metrics(results, data):
    arrays = results["arrays"]
    n_in, n_out = len(data["digits"]), len(data["letters"])
    assert arrays["confidence"].shape == arrays["correct"].shape == (n_in,)
    assert arrays["correct"].mean() == pytest.approx(results["test"]["accuracy"])
    assert np.array_equal(arrays["correct"], arrays["prediction"] == arrays["label"])
    for kind, scores in arrays["ood_scores"].items():
        assert scores["in"].shape == (n_in,) and scores["out"].shape == (n_out,)
        recomputed = auroc(torch.from_numpy(scores["in"]), torch.from_numpy(scores["out"]))
        assert recomputed == pytest.approx(results["ood"][kind]["auroc"])


def test_corrupt_then_normalise_then_predict(trained, data, tmp_path):
    images, labels = as_tensors(data["digits"])
    images, labels = images[:100], labels[:100]
    result = evaluate_model(trained, (images, labels), dataset="digits", corruptions=("fog",),
                            severities=(3,), batch_size=100, seed=4)
    # By hand: the images a corrupted folder written with the same seed holds (the one shift
    # source of the experiments), normalised, one batch.
    write_corrupted_folder((images, labels), tmp_path, ["fog"], [3], seed=4)
    shifted, folder_labels = read_corrupted_folder(tmp_path, "fog", 3).tensors
    assert torch.equal(folder_labels, labels)
    with torch.no_grad():
        logits = predict_members(trained, Normalize("digits")(shifted))
    expected = evaluate_predictions(logits, labels)
    assert result["shift"][3]["fog"]["nll"] == expected["nll"]
    assert result["shift"][3]["fog"]["ece"] == expected["ece"]


def test_corrupted_images_and_metrics_do_not_depend_on_the_batch_size(trained, data):
    seen = {}
    for batch_size in (7, 500):
        rows = []
        handle = trained.members[0].register_forward_pre_hook(
            lambda module, inputs, rows=rows: rows.append(inputs[0].detach().clone()))
        try:
            seen[batch_size] = (evaluate_model(
                trained, data["digits"], dataset="digits", corruptions=("gaussian_noise",),
                severities=(5,), batch_size=batch_size), torch.cat(rows))
        finally:
            handle.remove()
    (small, small_inputs), (large, large_inputs) = seen[7], seen[500]
    # the same normalised images reach the model, clean and corrupted (539 rows each)...
    assert small_inputs.shape[0] == large_inputs.shape[0] == 2 * len(data["digits"])
    assert torch.equal(small_inputs, large_inputs)
    # ...so the metrics agree but for the last bits of the model's arithmetic per batch size
    shifted = small["shift"][5]["gaussian_noise"], large["shift"][5]["gaussian_noise"]
    for key in ("accuracy", "nll", "brier", "ece"):
        assert shifted[0][key] == pytest.approx(shifted[1][key], rel=1e-6, abs=1e-9)
    assert small["test"]["nll"] == pytest.approx(large["test"]["nll"], rel=1e-6)


def test_tensor_and_dataset_inputs_and_explicit_normalize_agree(trained, data):
    tensors = as_tensors(data["digits"])
    from_dataset = evaluate_model(trained, data["digits"], dataset="digits")
    from_tensors = evaluate_model(trained, tensors, normalize=Normalize("digits"))
    unnormalised = evaluate_model(trained, tensors)
    assert from_dataset["test"]["nll"] == from_tensors["test"]["nll"]
    assert unnormalised["test"]["nll"] != from_tensors["test"]["nll"]


def test_stochastic_predictions_are_reproducible_and_leave_the_rng_alone(data):
    model = build_model("mlp", "mc_dropout", num_classes=10, in_channels=1, input_size=8,
                        p=0.3, n=4, seed=0)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    first = evaluate_model(model, data["digits"], dataset="digits", seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    second = evaluate_model(model, data["digits"], dataset="digits", seed=2, batch_size=7)
    # The members are the model's (its own seeded generator), whatever seed and batch size.
    assert first["test"]["nll"] == pytest.approx(second["test"]["nll"], rel=1e-9)
    model.sampling_seed = 1
    other = evaluate_model(model, data["digits"], dataset="digits", seed=1)
    assert first["test"]["nll"] != other["test"]["nll"]


def test_plain_classifier_is_one_member():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    images = torch.rand(30, 1, 8, 8)
    torch.set_num_threads(2)
    result = evaluate_model(model, (images, torch.arange(30) % 10), batch_size=7, threads=1)
    assert torch.get_num_threads() == 2  # restored
    assert result["test"]["n_members"] == 1 and result["test"]["n_samples"] == 30
    assert math.isnan(result["test"]["disagreement"])


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(corruptions=("rain",)), "unknown corruption"),
        (dict(corruptions=("fog",), severities=(6,)), "severity"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_raise_before_work(kwargs, fragment, trained, data):
    with pytest.raises(ValueError, match=fragment):
        evaluate_model(trained, data["digits"], dataset="digits", **kwargs)

"""The validation split: fixed, seeded, stratified, disjoint from training, never the test set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from ensemblekit import data
from ensemblekit.experiments import BenchmarkSettings
from ensemblekit.experiments.splits import load_experiment_data


def reference_split(labels: np.ndarray, fraction: float, seed: int):
    """Per class in ascending order, a permutation from one generator; its first
    round(fraction * size) are held out."""
    rng = np.random.default_rng(seed)
    held = []
    for label in sorted(set(labels.tolist())):
        members = np.array([i for i, y in enumerate(labels) if y == label])
        order = rng.permutation(members)
        held.extend(order[: int(round(fraction * len(members)))].tolist())
    return sorted(set(range(len(labels))) - set(held)), sorted(held)


def digits_train():
    return data.as_tensors(data.load_dataset("digits", "train"))


def test_digits_default_split_is_a_stratified_fifth():
    images, labels = digits_train()
    fraction = data.default_validation_fraction("digits")
    assert fraction == 0.2
    (train_x, train_y), (val_x, val_y) = data.split_validation((images, labels), fraction)
    kept, held = reference_split(labels.numpy(), fraction, data.VALIDATION_SEED)
    assert len(held) == len(val_y) == 250 and len(kept) == len(train_y) == 1008
    assert torch.equal(val_x, images[held]) and torch.equal(val_y, labels[held])
    assert torch.equal(train_x, images[kept]) and torch.equal(train_y, labels[kept])
    for digit in range(10):  # every class keeps its share (to rounding)
        in_class = int((labels == digit).sum())
        assert int((val_y == digit).sum()) == round(0.2 * in_class)


def test_the_split_is_fixed_and_depends_on_its_own_seed_only():
    train = digits_train()
    first = data.split_validation(train, 0.2)[1]
    torch.manual_seed(123)  # the global RNG plays no part
    again = data.split_validation(train, 0.2)[1]
    other = data.split_validation(train, 0.2, seed=1)[1]
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[0], other[0])


class _Unlabelled(Dataset):
    """A dataset whose labels can only be read item by item (no labels/targets attribute)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return torch.full((1, 2, 2), float(index)), index % 3


def test_datasets_become_subsets_stratified_when_labels_are_at_hand():
    dataset = data.load_dataset("digits", "train")
    train, validation = data.split_validation(dataset, 0.2)
    _, (_, val_y) = data.split_validation(data.as_tensors(dataset), 0.2)
    assert torch.equal(torch.as_tensor([dataset[i][1] for i in validation.indices]), val_y)
    assert sorted(train.indices + validation.indices) == list(range(len(dataset)))

    unlabelled = _Unlabelled(50)
    train, validation = data.split_validation(unlabelled, 0.1, seed=3)
    expected = np.sort(np.random.default_rng(3).permutation(50)[:5])
    assert validation.indices == expected.tolist()
    assert not set(train.indices) & set(validation.indices) and len(train) == 45


def test_fraction_zero_keeps_everything_and_bad_fractions_are_refused():
    train = digits_train()
    kept, validation = data.split_validation(train, 0.0)
    assert validation is None and kept is train
    for bad in (1.0, -0.1, "a fifth"):
        with pytest.raises(ValueError, match="validation_fraction"):
            data.split_validation(train, bad)
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        data.split_validation((torch.zeros(3, 1), torch.arange(3)), 0.1)


def test_experiment_data_holds_out_validation_and_leaves_test_alone(tmp_path):
    settings = BenchmarkSettings.from_sources(overrides={"out": str(tmp_path), "ood": "none",
                                                         "corruptions": "none"})
    assert settings.validation_fraction == 0.2
    loaded = load_experiment_data(settings, log=lambda message: None)
    train_x, _ = loaded.train
    val_x, val_y = loaded.validation
    assert (len(train_x), len(val_x), len(loaded.test[0])) == (1008, 250, 539)
    # No validation image is a training image (rows compared exactly).
    train_rows = {tuple(row.tolist()) for row in train_x.flatten(1)}
    assert not any(tuple(row.tolist()) in train_rows for row in val_x.flatten(1))
    test_x, _ = data.as_tensors(data.load_dataset("digits", "test"))
    assert torch.equal(loaded.test[0], test_x)

    off = BenchmarkSettings.from_sources(overrides={"out": str(tmp_path), "ood": "none",
                                                    "corruptions": "none",
                                                    "validation_fraction": 0})
    loaded = load_experiment_data(off, log=lambda message: None)
    assert loaded.validation is None and len(loaded.train[0]) == 1258


def test_settings_resolve_the_dataset_default_and_check_the_fraction():
    assert BenchmarkSettings.from_sources(overrides={"dataset": "mnist"}).validation_fraction \
        == 0.1
    with pytest.raises(ValueError, match="validation_fraction must satisfy"):
        BenchmarkSettings.from_sources(overrides={"validation_fraction": 1.5})
    # The fraction decides what a run trained on: part of the resume fingerprint.
    assert BenchmarkSettings.from_sources().fingerprint()["validation_fraction"] == 0.2


def test_train_command_early_stops_on_the_validation_split(tmp_path):
    from ensemblekit.experiments import TrainSettings, run_train

    settings = TrainSettings.from_sources(overrides={
        "method": "single", "epochs": 3, "threads": 1, "out": str(tmp_path),
        "train": {"early_stopping_patience": 1}})
    run_train(settings, log=lambda message: None)
    history = json.loads((tmp_path / "train.json").read_text())["history"]
    assert 1 <= len(history) <= 3
    assert all(0.0 <= row["val_accuracy"] <= 1.0 for row in history)


def test_validation_fraction_flag_reaches_the_benchmark(tmp_path, capsys):
    from ensemblekit import cli

    out = tmp_path / "run"
    status = cli.main(["benchmark", "--methods", "single", "--seeds", "1", "--epochs", "1",
                       "--corruptions", "none", "--ood", "none", "--threads", "1",
                       "--validation-fraction", "0", "--out", str(out)])
    assert status == 0
    record = json.loads((out / "runs" / "single" / "seed-0.json").read_text())
    assert record["validation"] is None and record["settings"]["validation_fraction"] == 0.0
    assert "no validation split (validation_fraction 0)" in (out / "report.md").read_text()
    assert cli.main(["benchmark", "--validation-fraction", "1", "--out", str(out)]) == 2
    assert "validation_fraction must satisfy" in capsys.readouterr().err

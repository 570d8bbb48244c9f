"""Per-method settings: ``[method_options.<method>]`` tables over the global keys."""

from __future__ import annotations

import json
import math

import pytest

from ensemblekit.experiments import BenchmarkSettings, TuneSettings
from ensemblekit.experiments.benchmark import finished_runs, run_path
from ensemblekit.experiments.pipeline import build, train
from ensemblekit.experiments.recipes import recipe_for
from ensemblekit.experiments.splits import load_experiment_data

TOML = """
dataset = "digits"
members = 4
scale = 2.0
dropout = 0.1
epochs = 7

[method_options.masksembles]
n = 3
scale = 3
epochs = 12

[method_options.mc_dropout]
p = 0.25
n = 6

[method_options.batchensemble]
init = "random_sign"
"""


def without_tables(recipe: str) -> str:
    """A recipe file's text without its [method_options] tables (they come last)."""
    return recipe[:recipe.index("[method_options.")]


def published_keep(n: int, scale: float) -> float:
    """The keep fraction of Durasov et al.: 1 / (S (1 - (1 - 1/S)^N))."""
    return 1.0 / (scale * (1.0 - (1.0 - 1.0 / scale) ** n))


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "options.toml"
    path.write_text(TOML)
    return path


def test_tables_override_the_global_keys_for_their_method_only(config):
    settings = BenchmarkSettings.from_sources(config)
    masksembles = settings.model_options("masksembles", seed=5)
    assert (masksembles["n"], masksembles["scale"], masksembles["seed"]) == (3, 3.0, 5)
    assert "epochs" not in masksembles  # epochs is a training setting, not a build option
    mc = settings.model_options("mc_dropout", seed=0)
    assert (mc["n"], mc["p"]) == (6, 0.25)
    assert settings.model_options("batchensemble", seed=0)["init"] == "random_sign"
    assert settings.model_options("deep_ensemble", seed=0)["n"] == 4  # global members
    model = build(settings, "masksembles", seed=0)
    assert (model.config["n"], model.config["scale"], model.num_members) == (3, 3.0, 3)
    assert build(settings, "batchensemble", seed=0).config["init"] == "random_sign"


def test_method_epochs_replace_the_global_epochs_for_that_method(config):
    settings = BenchmarkSettings.from_sources(config)
    assert settings.train_config(seed=0, method="masksembles").epochs == 12
    assert settings.train_config(seed=0, method="single").epochs == 7
    assert settings.train_config(seed=0).epochs == 7


def test_training_runs_the_method_epochs(tmp_path):
    settings = BenchmarkSettings.from_sources(overrides={
        "epochs": 1, "out": str(tmp_path), "corruptions": "none", "ood": "none",
        "method_options": {"single": {"epochs": 2}}})
    data = load_experiment_data(settings, log=lambda message: None)
    assert train(settings, build(settings, "single", seed=0), data, seed=0)["epochs"] == 2
    model = build(settings, "batchensemble", seed=0)
    assert train(settings, model, data, seed=0)["epochs"] == 1


def test_flags_of_global_keys_replace_the_table_entries(config):
    settings = BenchmarkSettings.from_sources(config, {"scale": 1.5, "epochs": 1,
                                                       "members": 2})
    options = settings.model_options("masksembles", seed=0)
    assert (options["scale"], options["n"]) == (1.5, 2)
    assert settings.train_config(seed=0, method="masksembles").epochs == 1
    assert settings.model_options("mc_dropout", seed=0)["p"] == 0.25  # no --dropout given
    settings = BenchmarkSettings.from_sources(config, {"dropout": 0.05})
    assert settings.model_options("mc_dropout", seed=0)["p"] == 0.05
    assert settings.model_options("masksembles", seed=0)["scale"] == 3.0


def test_python_overrides_merge_key_by_key(config):
    settings = BenchmarkSettings.from_sources(
        config, {"method_options": {"masksembles": {"n": 4}}})
    options = settings.model_options("masksembles", seed=0)
    assert (options["n"], options["scale"]) == (4, 3.0)


@pytest.mark.parametrize(("options", "expected"), [
    ({"masksemble": {"n": 4}}, "unknown key 'masksemble' in method_options; valid keys are: "
                               "single, mc_dropout, masksembles"),
    ({"masksembles": {"p": 0.1}}, "unknown key 'p' in [method_options.masksembles]; valid "
                                  "keys are: n, scale"),
    ({"single": {"n": 4}}, "[method_options.single]; valid keys are: epochs"),
    ({"masksembles": 4}, "method_options.masksembles must be a table"),
    ({"masksembles": {"scale": 0.5}}, "method_options.masksembles.scale"),
    ({"mc_dropout": {"p": 1.0}}, "method_options.mc_dropout.p"),
    ({"deep_ensemble": {"epochs": 0}}, "method_options.deep_ensemble.epochs"),
    ({"batchensemble": {"n": 2.5}}, "method_options.batchensemble.n"),
])
def test_bad_tables_are_refused_naming_the_key(options, expected):
    with pytest.raises(ValueError) as error:
        BenchmarkSettings.from_sources(overrides={"method_options": options})
    assert expected in str(error.value)


def test_unknown_keys_in_a_config_file_are_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[method_options.masksembles]\nsacle = 2.0\n")
    with pytest.raises(ValueError, match="unknown key 'sacle' in \\[method_options.masksembles\\]"):
        BenchmarkSettings.from_sources(path)


def test_method_settings_state_drop_fraction_and_member_width(config):
    settings = BenchmarkSettings.from_sources(config)
    masksembles = settings.method_settings("masksembles")
    assert masksembles["drop_fraction"] == pytest.approx(1.0 - published_keep(3, 3.0))
    assert masksembles["member_width"] == pytest.approx(published_keep(3, 3.0))
    assert (masksembles["n"], masksembles["scale"], masksembles["epochs"]) == (3, 3.0, 12)
    mc = settings.method_settings("mc_dropout")
    assert (mc["drop_fraction"], mc["member_width"], mc["epochs"]) == (0.25, 0.75, 7)
    for method in ("single", "batchensemble", "deep_ensemble"):
        entry = settings.method_settings(method)
        assert (entry["drop_fraction"], entry["member_width"]) == (0.0, 1.0)
        assert "seed" not in entry
    assert settings.method_settings("batchensemble")["init"] == "random_sign"
    json.dumps(settings.method_settings("masksembles"))


def test_widened_members_keep_the_single_width():
    settings = BenchmarkSettings.from_sources(overrides={"method_options": {
        "masksembles": {"widen": True, "scale": 2.0}, "mc_dropout": {"widen": True, "p": 0.2}}})
    assert settings.method_settings("masksembles")["member_width"] == 1.0
    assert settings.method_settings("masksembles")["drop_fraction"] == pytest.approx(
        1.0 - published_keep(4, 2.0))
    assert settings.method_settings("mc_dropout")["member_width"] == 1.0
    assert not math.isclose(settings.method_settings("mc_dropout")["drop_fraction"], 0.0)


def test_fingerprint_holds_the_tables_and_resume_refuses_other_ones(config, tmp_path):
    out = str(tmp_path / "bench")
    first = BenchmarkSettings.from_sources(config, {"out": out})
    again = BenchmarkSettings.from_sources(config, {"out": out})
    # the TOML's integer scale and a float give the same fingerprint
    float_scale = BenchmarkSettings.from_sources(config, {"out": out, "method_options": {
        "masksembles": {"scale": 3.0}}})
    assert first.fingerprint() == again.fingerprint() == float_scale.fingerprint()
    assert first.fingerprint()["method_options"]["masksembles"]["scale"] == 3.0
    other = BenchmarkSettings.from_sources(config, {"out": out, "method_options": {
        "masksembles": {"scale": 2.0}}})
    assert other.fingerprint() != first.fingerprint()
    path = run_path(out, "single", 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"method": "single", "seed": 0,
                                "settings": first.fingerprint()}))
    assert (("single", 0) in finished_runs(again))
    with pytest.raises(ValueError, match="method_options"):
        finished_runs(other)


def test_no_tables_keep_the_fingerprint_of_before(recipes):
    # the digits recipe carries tuned tables; a recipe without any keeps the old fingerprint
    digits = recipes / "digits.toml"
    digits.write_text(without_tables(digits.read_text()))
    assert "method_options" not in BenchmarkSettings.from_sources().fingerprint()
    assert "method_options" in BenchmarkSettings.from_sources(overrides={
        "method_options": {"masksembles": {"scale": 3.0}}}).fingerprint()


@pytest.fixture
def recipe_with_tables(recipes):
    digits = recipes / "digits.toml"
    digits.write_text(without_tables(digits.read_text()) + "[method_options.masksembles]\n"
                      "scale = 3.0\nepochs = 9\n[method_options.mc_dropout]\np = 0.2\n")


def test_a_recipes_tables_are_the_default_and_lie_under_config_and_flags(recipe_with_tables,
                                                                         tmp_path):
    default = BenchmarkSettings.from_sources()
    assert default.model_options("masksembles", seed=0)["scale"] == 3.0
    assert default.train_config(seed=0, method="masksembles").epochs == 9
    assert default.model_options("mc_dropout", seed=0)["p"] == 0.2
    assert default.fingerprint()["method_options"] == {"masksembles": {"epochs": 9,
                                                                       "scale": 3.0},
                                                       "mc_dropout": {"p": 0.2}}
    flagged = BenchmarkSettings.from_sources(overrides={"scale": 1.5, "epochs": 2})
    assert flagged.model_options("masksembles", seed=0)["scale"] == 1.5
    assert flagged.train_config(seed=0, method="masksembles").epochs == 2
    assert flagged.model_options("mc_dropout", seed=0)["p"] == 0.2
    path = tmp_path / "config.toml"
    path.write_text("dropout = 0.05\n[method_options.masksembles]\nscale = 4.0\n")
    configured = BenchmarkSettings.from_sources(path)
    assert configured.model_options("masksembles", seed=0)["scale"] == 4.0  # its table
    assert configured.train_config(seed=0, method="masksembles").epochs == 9  # the recipe's
    assert configured.model_options("mc_dropout", seed=0)["p"] == 0.05  # its global
    other = BenchmarkSettings.from_sources(overrides={"backbone": "mlp"})
    assert other.method_options == {}  # tuned for the recipe's backbone only


def test_tune_starts_from_the_recipes_plain_settings_not_its_tuned_tables():
    assert recipe_for("digits")["method_options"]  # the benchmark's default is tuned...
    assert BenchmarkSettings.from_sources().method_options
    # ...but tune explores those knobs itself: the recorded tune command stays reproducible
    assert TuneSettings.from_sources().method_options == {}


def test_a_methods_table_may_set_backbone_options_such_as_width():
    # a method added later (MIMO) needs its own width: the backbone's options are table keys
    settings = BenchmarkSettings.from_sources(overrides={"method_options": {
        "batchensemble": {"width": 2.0}}})
    assert settings.model_options("batchensemble", seed=0)["width"] == 2.0
    assert settings.model_options("single", seed=0)["width"] == settings.width == 3.0
    assert build(settings, "batchensemble", seed=0).config["width"] == 2.0
    assert settings.method_settings("batchensemble")["width"] == 2.0
    with pytest.raises(ValueError, match="method_options.batchensemble.width"):
        BenchmarkSettings.from_sources(overrides={"method_options": {
            "batchensemble": {"width": 0}}})
    with pytest.raises(ValueError, match="unknown key 'input_size'"):  # the dataset's to set
        BenchmarkSettings.from_sources(overrides={"method_options": {
            "batchensemble": {"input_size": 16}}})

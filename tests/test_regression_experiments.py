"""The regression experiments end to end on tiny budgets: the benchmark on diabetes (resumed),
the published UCI protocol on a fixture in the release layout (2 splits) through the CLI, the
toy figure, tune on a regression set, and the settings' errors."""

from __future__ import annotations

import json

import pytest
import torch

from ensemblekit.cli import main
from ensemblekit.experiments.regression_benchmark import (
    RegressionBenchmarkSettings,
    run_path,
    run_regression_benchmark,
)
from ensemblekit.experiments.regression_toy import RegressionToySettings, run_regression_toy
from ensemblekit.experiments.tune import run_tune
from ensemblekit.experiments.tune_settings import RegressionTuneSettings
from test_regression_data import write_uci_folder

QUIET = {"log": lambda message: None}


def test_benchmark_on_diabetes_scores_in_original_units_and_resumes(tmp_path):
    settings = RegressionBenchmarkSettings.from_sources(overrides={
        "methods": ["single", "masksembles", "deep_ensemble"], "seeds": 2, "epochs": 2,
        "out": str(tmp_path)})
    results = run_regression_benchmark(settings, **QUIET)
    assert set(results["methods"]) == {"single", "masksembles", "deep_ensemble"}
    record = json.loads(run_path(tmp_path, "masksembles", None, 1).read_text())
    values = torch.load(run_path(tmp_path, "masksembles", None, 1).with_suffix(".pt"),
                        weights_only=True)
    # the record's RMSE is that of the saved per-input errors, in the target's units (the
    # diabetes target spans 25..346: an untrained-ish model errs by tens, not by ~1)
    assert record["test"]["rmse"] == pytest.approx(values["squared_error"].mean().sqrt().item())
    assert record["test"]["rmse"] > 10 and record["num_members"] == 4
    assert record["model_config"]["task"] == "regression"
    assert record["conformal"]["nominal"] == pytest.approx(0.95)
    assert "calibration" in record["variance_scaled"]
    for name in ("results.json", "results.csv", "report.md", "figures/calibration_curves.png",
                 "figures/sparsification.png", "figures/sigma_vs_error.png",
                 "figures/verdicts.png"):
        assert (tmp_path / name).is_file(), name
    assert results["orderings"], "single, Masksembles and Deep Ensembles make claims"
    # a rerun trains nothing and gives the same results
    lines = []
    again = run_regression_benchmark(settings, log=lines.append)
    assert lines[0].startswith(f"resuming {tmp_path}: 6 of 6 runs already finished")
    assert again["methods"]["single"]["test"] == results["methods"]["single"]["test"]


def test_uci_protocol_runs_end_to_end_from_the_release_layout(tmp_path, capsys):
    table, splits = write_uci_folder(tmp_path, "yacht", n_rows=240, n_splits=2, test_size=24)
    data = tmp_path / "UCI_Datasets" / "yacht" / "data"
    (data / "n_hidden.txt").write_text("8\n")
    (data / "n_epochs.txt").write_text("2\n")
    out = tmp_path / "out"
    status = main(["benchmark", "--task", "regression", "--dataset", "uci-yacht", "--data-dir",
                   str(tmp_path), "--methods", "single,deep_ensemble", "--seeds", "1",
                   "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["splits"] == [0, 1]
    protocol = results["protocol"]
    assert protocol["hidden"] == [8] and protocol["train"]["epochs"] == 2
    assert protocol["published_protocol"] and "standard error" in protocol["spread"]
    for split in (0, 1):
        record = json.loads(run_path(out, "deep_ensemble", split, 0).read_text())
        assert record["model_config"]["hidden"] == [8] and record["train"]["epochs"] == 2
    # mean +- standard error over the two splits, in the target's original units
    nll = [json.loads(run_path(out, "single", s, 0).read_text())["test"]["nll"]
           for s in (0, 1)]
    value = results["methods"]["single"]["test"]["nll"]
    assert value["mean"] == pytest.approx(sum(nll) / 2)
    assert value["se"] == pytest.approx(abs(nll[0] - nll[1]) / 2)
    target_std = table[splits[0][0], -1].std()
    rmse = json.loads(run_path(out, "single", 0, 0).read_text())["test"]["rmse"]
    assert 0.05 * target_std < rmse < 5 * target_std
    assert "uci-yacht" in (out / "report.md").read_text()
    # another split choice is refused before training
    assert main(["benchmark", "--task", "regression", "--dataset", "uci-yacht", "--data-dir",
                 str(tmp_path), "--splits", "5", "--out", str(out / "other")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_toy_figure_shows_no_epistemic_part_for_one_model(tmp_path):
    settings = RegressionToySettings.from_sources(overrides={
        "datasets": ["toy_cubic"], "scales": [2.0], "epochs": 3, "points": 40,
        "out": str(tmp_path)})
    result = run_regression_toy(settings, **QUIET)
    assert (tmp_path / "toy_regression.png").is_file()
    panels = {panel["title"]: panel for panel in result["panels"]["toy_cubic"]}
    assert [p["method"] for p in result["panels"]["toy_cubic"]] == [
        "single", "mc_dropout", "masksembles", "deep_ensemble"]
    assert panels["Single model"]["epistemic_std_outside"] == 0.0
    assert panels["Deep Ensemble (4)"]["epistemic_std_outside"] > 0.0
    assert panels["Deep Ensemble (4)"]["epistemic_std_gap"] is None  # the cubic has no gap


def test_tune_scores_regression_points_by_validation_nll(tmp_path):
    settings = RegressionTuneSettings.from_sources(overrides={
        "methods": ["single", "mc_dropout"], "seeds": 1, "epochs": 1,
        "grid": {"mc_dropout": {"p": [0.05, 0.2], "placement": ["all"], "epochs_factor": [1.0]}},
        "cost_seconds": 0.0, "cost_rounds": 1, "out": str(tmp_path)})
    result = run_tune(settings, **QUIET)
    assert len(result["rows"]) == 3 and result["task"] == "regression"
    row = next(r for r in result["rows"] if r["picked"] and r["method"] == "mc_dropout")
    others = [r for r in result["rows"] if r["method"] == "mc_dropout"]
    assert row["nll"]["mean"] == min(r["nll"]["mean"] for r in others)
    assert "val cal. error" in (tmp_path / "tune.md").read_text()
    toml = (tmp_path / "tuned.toml").read_text()
    assert "ensemblekit benchmark --task regression --config" in toml
    assert RegressionBenchmarkSettings.from_sources(tmp_path / "tuned.toml").method_options[
        "mc_dropout"]["p"] == row["options"]["p"]


@pytest.mark.parametrize("argv, needle", [
    (["benchmark", "--task", "regression", "--dataset", "digits"], "is a classification set"),
    (["benchmark", "--dataset", "diabetes"], "pass --task regression"),
    (["benchmark", "--splits", "1"], "--splits does not apply to `ensemblekit benchmark --task "
                                     "classification`"),
    (["benchmark", "--task", "regression", "--corruptions", "fog"], "--corruptions does not "
                                                                    "apply"),
    (["toy", "--task", "regression", "--resolution", "20"], "--resolution does not apply"),
    (["benchmark", "--task", "regression", "--splits", "1"], "has one train/test split"),
    (["toy", "--task", "regression", "--datasets", "diabetes"], "1-D regression toys"),
    (["benchmark", "--task", "regression", "--validation-fraction", "0"], "validation_fraction"),
])
def test_bad_regression_settings_are_refused_before_any_work(argv, needle, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

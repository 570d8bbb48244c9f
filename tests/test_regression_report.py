"""The regression benchmark's statistics, report and figures on records computed from known
Gaussian members (no training): the per-input values against ``evaluate_regression``, the
weighted metrics at unit weights, the verdicts on orderings built into the data, the UCI
mean +- standard error over splits, and the files written."""

from __future__ import annotations

import math

import pytest
import torch

from ensemblekit import plots, report
from ensemblekit.data.regression import Standardization
from ensemblekit.experiments.regression_protocol import regression_record
from ensemblekit.members import GaussianMembers
from ensemblekit.metrics import evaluate_regression, regression_per_sample, sigma_error_bins
from ensemblekit.stats import regression_orderings
from ensemblekit.stats.weighted_regression import REGRESSION_CLAIM_METRICS

#: The targets' original units: mean 150, std 70 (diabetes-like).
UNITS = Standardization(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64),
                        torch.tensor([150.0], dtype=torch.float64),
                        torch.tensor([70.0], dtype=torch.float64))
#: Each method's member error: the smaller, the better every proper score.
NOISE = {"single": 1.0, "mc_dropout": 0.6, "masksembles": 0.5, "deep_ensemble": 0.15}


def members_of(targets: torch.Tensor, noise: float, generator) -> GaussianMembers:
    means = targets + noise * torch.randn(4, *targets.shape, generator=generator)
    return GaussianMembers(means, torch.full((4, *targets.shape), 0.2 + noise ** 2))


def runs(noise: dict, *, seeds: int = 3, splits=(None,), n_test: int = 60):
    """Records and per-input values of every (method, split, seed), from known members."""
    g = torch.Generator().manual_seed(0)
    test, validation = torch.randn(n_test, 1, generator=g), torch.randn(40, 1, generator=g)
    records, predictions = [], {}
    for split in splits:
        for method, level in noise.items():
            for seed in range(seeds):
                record, values = regression_record(
                    members_of(test, level, g), test, members_of(validation, level, g),
                    validation, UNITS)
                record.update(method=method, split=split, seed=seed, params=100,
                              num_members=4, train={"loss": 0.1, "rmse": 0.5, "epochs": 2,
                                                    "seconds": 0.1})
                records.append(record)
                if split == splits[0]:
                    predictions[(method, seed)] = values
    return records, predictions


def protocol(**changes) -> dict:
    return {"dataset": "diabetes", "task": "regression", "backbone": "mlp", "width": None,
            "hidden": [50], "members": 4, "masksembles_scale": 2.0, "mc_dropout_p": 0.1,
            "mc_samples": 4, "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam",
                                       "lr": 1e-3, "weight_decay": 0.0,
                                       "schedule": "constant", "loss": "beta_nll",
                                       "beta": 0.5},
            "seeds": [0, 1, 2], "splits": None, "published_protocol": False,
            "validation_fraction": 0.1, "alpha": 0.05, "units": "original units",
            "aggregation": "mixture", "spread": "sample std over seeds",
            "method_settings": None, "tuned": None, **changes}


def test_per_input_values_give_evaluate_regression_and_its_weighted_metrics():
    g = torch.Generator().manual_seed(1)
    targets = torch.randn(50, 2, generator=g, dtype=torch.float64)
    means = targets + torch.randn(3, 50, 2, generator=g, dtype=torch.float64)
    variances = 0.3 + torch.rand(3, 50, 2, generator=g, dtype=torch.float64)
    values = regression_per_sample(means, variances, targets)
    expected = evaluate_regression(means, variances, targets)
    assert values["nll"].mean().item() == pytest.approx(expected["nll"], rel=1e-12)
    assert values["crps"].mean().item() == pytest.approx(expected["crps"], rel=1e-12)
    labels = torch.zeros(50)
    for name, metric in REGRESSION_CLAIM_METRICS.items():
        assert metric(values, labels) == pytest.approx(expected[name], rel=1e-12), name
    # integer weights = the metric of the repeated inputs
    weights = torch.randint(0, 3, (1, 50), generator=g).double()
    index = torch.repeat_interleave(torch.arange(50), weights[0].long())
    repeated = evaluate_regression(means[:, index], variances[:, index], targets[index])
    for name, metric in REGRESSION_CLAIM_METRICS.items():
        assert metric.weighted(values, labels, weights)[0].item() == pytest.approx(
            repeated[name], rel=1e-10), name


def test_sigma_error_bins_are_the_ence_bins():
    g = torch.Generator().manual_seed(2)
    mean = torch.randn(200, generator=g, dtype=torch.float64)
    var = 0.1 + torch.rand(200, generator=g, dtype=torch.float64)
    targets = mean + var.sqrt() * torch.randn(200, generator=g, dtype=torch.float64)
    bins = sigma_error_bins(mean, var, targets, n_bins=10)
    rmv = torch.tensor(bins["rmv"], dtype=torch.float64)
    rmse = torch.tensor(bins["rmse"], dtype=torch.float64)
    ence = evaluate_regression(mean[None, :, None], var[None, :, None], targets[:, None])["ence"]
    assert ((rmv - rmse).abs() / rmv).mean().item() == pytest.approx(ence, rel=1e-12)
    assert sum(bins["count"]) == 200 and rmv.diff().min() >= 0  # sorted by sigma


def test_verdicts_follow_the_ordering_built_into_the_data():
    _, predictions = runs(NOISE)
    claims = {c["claim"]: c for c in regression_orderings(predictions, n_boot=300)}
    assert claims["Deep Ensembles' NLL and CRPS are below the single model's"]["verdict"] == \
        "holds"
    between = next(c for text, c in claims.items() if text.startswith("Masksembles lies"))
    assert {c["metric"] for c in between["comparisons"]} == {"rmse", "nll", "crps",
                                                             "calibration_error"}
    nll = [c for c in between["comparisons"] if c["metric"] == "nll"]
    assert [c["verdict"] for c in nll] == ["holds", "holds"]
    # a claim whose methods did not run is left out
    _, fewer = runs({"single": 1.0, "deep_ensemble": 0.15}, seeds=2)
    assert [c["claim"] for c in regression_orderings(fewer, n_boot=100)] == [
        "Deep Ensembles' NLL and CRPS are below the single model's"]


def test_results_report_and_figures(tmp_path):
    records, predictions = runs(NOISE)
    results = report.regression_results(records, protocol(), predictions=predictions)
    entry = results["methods"]["deep_ensemble"]
    rmse = [r["test"]["rmse"] for r in records if r["method"] == "deep_ensemble"]
    assert entry["test"]["rmse"]["mean"] == pytest.approx(sum(rmse) / 3)
    # metrics in original units (target std 70): the single model's members err by about
    # 1 standardised unit each, 0.5 for their mean
    assert 20 < results["methods"]["single"]["test"]["rmse"]["mean"] < 50
    scaled = entry["variance_scaled"]
    # scaling dilates the members about their mean: the mean, hence the RMSE, stays
    assert scaled["identified"] == 3
    assert scaled["test"]["rmse"]["mean"] == pytest.approx(entry["test"]["rmse"]["mean"])
    assert scaled["validation_nll"]["after"]["mean"] <= scaled["validation_nll"]["before"][
        "mean"]
    assert entry["conformal"]["nominal"] == pytest.approx(0.95)
    assert 0 < entry["conformal"]["coverage"]["mean"] <= 1
    report.write_regression_reports(tmp_path, results)
    written = plots.regression_figures(tmp_path / "figures", results)
    assert {p.name for p in written} == {"calibration_curves.png", "sparsification.png",
                                         "sigma_vs_error.png", "verdicts.png"}
    markdown = (tmp_path / "report.md").read_text()
    assert "| Deep Ensemble +VS (3/3) |" in markdown and "### Conformal intervals" in markdown
    assert "Deep Ensembles' NLL and CRPS are below the single model's: holds" in markdown
    csv_lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 2 * len(NOISE)  # a raw and a +VS row per method


def test_uci_results_are_mean_and_standard_error_over_splits():
    records, predictions = runs({"single": 1.0, "deep_ensemble": 0.15}, seeds=2,
                                splits=(0, 1, 2))
    results = report.regression_results(records, protocol(splits=[0, 1, 2], seeds=[0, 1]),
                                        predictions=predictions)
    value = results["methods"]["single"]["test"]["nll"]
    by_split = [sum(r["test"]["nll"] for r in records
                    if r["method"] == "single" and r["split"] == s) / 2 for s in (0, 1, 2)]
    mean = sum(by_split) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in by_split) / 2)
    assert value["mean"] == pytest.approx(mean) and value["se"] == pytest.approx(std / 3 ** 0.5)
    assert f"{mean:.3f} ± {std / 3 ** 0.5:.3f}" in report.regression_summary_table(results)
    assert results["bootstrap"]["split"] == 0

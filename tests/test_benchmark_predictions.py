"""The benchmark keeps each run's per-example predictions beside its record, reports training
and validation fit, bootstraps its verdicts from them, and recomputes a run whose predictions
file is missing or damaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ensemblekit import metrics
from ensemblekit.experiments import BenchmarkSettings, run_benchmark
from ensemblekit.experiments.benchmark import load_predictions, predictions_path, run_path

METHODS = ["single", "masksembles", "deep_ensemble"]


def settings(out):
    return BenchmarkSettings.from_sources(overrides={
        "methods": METHODS, "seeds": 1, "epochs": 1, "corruptions": ["gaussian_noise"],
        "severities": [1, 5], "members": 2, "threads": 1, "out": str(out)})


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    results = run_benchmark(settings(out), log=lambda message: None)
    return out, results


def test_records_hold_training_and_validation_fit(bench):
    out, results = bench
    record = json.loads(run_path(out, "masksembles", 0).read_text())
    assert set(record["train"]) >= {"loss", "accuracy", "epochs", "seconds"}
    assert record["train"]["epochs"] == 1 and 0 <= record["train"]["accuracy"] <= 1
    assert set(record["validation"]) == {"accuracy", "nll", "brier", "ece"}
    entry = results["methods"]["masksembles"]
    assert entry["train"]["accuracy"]["mean"] == record["train"]["accuracy"]
    assert entry["validation"]["nll"]["mean"] == record["validation"]["nll"]
    report = (out / "report.md").read_text()
    assert "### Training fit" in report and "validation NLL" in report
    csv = (out / "results.csv").read_text()
    assert "masksembles,train,,accuracy," in csv and "masksembles,validation,,nll," in csv


def test_saved_predictions_reproduce_the_recorded_metrics(bench):
    out, _ = bench
    for method in METHODS:
        record = json.loads(run_path(out, method, 0).read_text())
        saved = torch.load(predictions_path(out, method, 0), weights_only=True)
        probs, labels = saved["test_probs"], saved["labels"]
        assert probs.shape == (539, 10) and labels.shape == (539,)
        test = record["test"]
        assert metrics.accuracy(probs, labels) == test["accuracy"]
        assert metrics.ece(probs, labels) == pytest.approx(test["ece"], abs=1e-9)
        assert metrics.nll(probs, labels) == pytest.approx(test["nll"], abs=1e-9)
        entropy = saved["ood_scores"]["entropy"]
        assert metrics.auroc(entropy["in"], entropy["out"]) == pytest.approx(
            record["ood"]["entropy"]["auroc"], abs=1e-12)
        shift = saved["shift"]
        assert shift["severities"] == ["1", "5"] and shift["kinds"] == ["gaussian_noise"]
        assert shift["confidence"].shape == shift["correct"].shape == (2, 1, 539)
        for index, severity in enumerate(shift["severities"]):
            recorded = record["shift"][severity]["gaussian_noise"]
            assert shift["correct"][index, 0].double().mean().item() == pytest.approx(
                recorded["accuracy"], abs=1e-12)


def test_results_carry_bootstrapped_verdicts(bench):
    out, results = bench
    claims = {claim["claim"]: claim for claim in results["orderings"]}
    assert "Deep Ensembles are better calibrated than the single model" in claims
    between = next(c for c in results["orderings"] if c["claim"].startswith("Masksembles"))
    assert [c["metric"] for c in between["comparisons"]] == [
        "accuracy", "accuracy", "nll", "nll", "ece", "ece", "shift_ece", "shift_ece",
        "auroc", "auroc"]
    for comparison in between["comparisons"]:
        d = comparison["difference"]
        assert d["low"] <= d["high"] and comparison["verdict"] in (
            "holds", "does not hold", "inconclusive")
    # The means the bootstrap starts from are the table's means.
    ece = between["comparisons"][4]["values"]
    assert ece["masksembles"] == pytest.approx(
        results["methods"]["masksembles"]["test"]["ece"]["mean"], abs=1e-9)
    report = (out / "report.md").read_text()
    assert "difference [95% interval]" in report and "figures/verdicts.png" in report
    assert (out / "figures" / "verdicts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_without_readable_predictions_is_recomputed(bench, tmp_path):
    out, results = bench
    # A copy of the finished folder, with one predictions file gone and one damaged.
    copy = tmp_path / "copy"
    for path in out.rglob("*"):
        if path.is_file() and "corrupted" not in path.parts:
            target = copy / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    predictions_path(copy, "single", 0).unlink()
    predictions_path(copy, "masksembles", 0).write_bytes(b"not a torch file")
    assert load_predictions(copy, "masksembles", 0) is None
    kept = run_path(copy, "deep_ensemble", 0).read_bytes()
    messages = []
    again = run_benchmark(settings(copy), log=messages.append)
    assert any("1 of 3 runs already finished (deep_ensemble/seed-0)" in m for m in messages)
    assert run_path(copy, "deep_ensemble", 0).read_bytes() == kept
    for method in ("single", "masksembles"):
        assert load_predictions(copy, method, 0) is not None
    # Training on CPU is deterministic: the recomputed runs give the same numbers.
    assert again["methods"]["single"]["test"] == results["methods"]["single"]["test"]
    # Same verdicts and intervals (matrix products on reloaded tensors may round the last bit
    # differently).
    for claim, before in zip(again["orderings"], results["orderings"], strict=True):
        assert claim["verdict"] == before["verdict"]
        for comparison, earlier in zip(claim["comparisons"], before["comparisons"], strict=True):
            assert comparison["verdict"] == earlier["verdict"]
            assert comparison["difference"] == pytest.approx(earlier["difference"], abs=1e-12)



def test_every_method_has_a_ts_row_whose_validation_nll_did_not_rise(bench):
    out, results = bench
    report = (out / "report.md").read_text()
    csv = (out / "results.csv").read_text()
    for method, label in (("single", "Single model"), ("masksembles", "Masksembles"),
                          ("deep_ensemble", "Deep Ensemble")):
        record = json.loads(run_path(out, method, 0).read_text())
        fit = record["calibrated"]["calibration"]
        assert fit["mode"] == "pool" and fit["n_validation"] == 250
        assert fit["validation_nll"]["after"] <= fit["validation_nll"]["before"] + 1e-9
        # accuracy is unchanged by one temperature on the pooled prediction
        assert record["calibrated"]["test"]["accuracy"] == pytest.approx(
            record["test"]["accuracy"], abs=1e-12)
        entry = results["methods"][method]["calibrated"]
        assert entry["validation_nll_fell"] is True
        assert entry["temperature"]["mean"] == fit["temperatures"][0]
        (run,) = entry["runs"]
        assert run["test_nll_raw"] == record["test"]["nll"]
        assert run["test_nll_ts"] == record["calibrated"]["test"]["nll"]
        assert run["validation_errors"] == round((1 - record["validation"]["accuracy"]) * 250)
        # pool mode scales one pooled prediction: the member scores are undefined there
        assert f"{method},ood+TS,mutual_information,auroc,n/a,n/a" in csv
        assert f"| {label} +TS | " in report
        assert f"{method},test+TS,,nll," in csv and f"{method},calibration,,temperature," in csv
    assert "Validation NLL after scaling <= before for every method and seed." in report


def test_per_corruption_cells_are_the_saved_predictions(bench):
    out, results = bench
    for method in METHODS:
        saved = torch.load(predictions_path(out, method, 0), weights_only=True)
        cells = results["methods"][method]["shift_by_kind"]
        assert set(cells) == {"1", "5"} and set(cells["5"]) == {"gaussian_noise"}
        for index, severity in enumerate(("1", "5")):
            cell = cells[severity]["gaussian_noise"]
            assert set(cell) == {"accuracy", "nll", "brier", "ece"}
            assert cell["accuracy"]["mean"] == pytest.approx(
                saved["shift"]["correct"][index, 0].double().mean().item(), abs=1e-12)
    csv = (out / "results.csv").read_text()
    assert "deep_ensemble,shift_kind,gaussian_noise/5,brier," in csv
    assert "### Per corruption kind at severity 5" in (out / "report.md").read_text()


def test_selective_metrics_and_risk_coverage_from_the_predictions(bench):
    out, results = bench
    for method in METHODS:
        saved = torch.load(predictions_path(out, method, 0), weights_only=True)
        probs, labels = saved["test_probs"].numpy(), saved["labels"].numpy()
        confidence, wrong = probs.max(1), probs.argmax(1) != labels
        order = np.argsort(-confidence, kind="stable")
        if len(np.unique(confidence)) == len(confidence):  # no ties: the plain formula
            reference = np.mean(np.cumsum(wrong[order]) / np.arange(1, len(order) + 1))
            assert results["methods"][method]["test"]["aurc"]["mean"] == pytest.approx(
                reference, abs=1e-9)
        curve = results["methods"][method]["risk_coverage"]
        assert curve["coverage"][-1] == 1.0
        assert curve["risk"][-1] == pytest.approx(wrong.mean(), abs=1e-12)
    assert (out / "figures" / "risk_coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_is_measured_once_in_one_process_as_ratios_to_the_single_model(bench):
    out, results = bench
    cost = json.loads((out / "cost.json").read_text())
    assert cost == results["cost"]
    models = cost["models"]
    assert set(models) == {"single", "masksembles", "masksembles_tiled", "deep_ensemble"}
    assert models["masksembles"]["inference"] == "compile_members"
    assert models["masksembles_tiled"]["inference"] == "predict_members"
    single = models["single"]
    assert single["latency_ratio"] == single["params_ratio"] == 1.0
    # two members: twice the single model's parameters and FLOPs, exactly
    assert models["deep_ensemble"]["params"] == 2 * single["params"]
    assert models["deep_ensemble"]["flops_ratio"] == 2.0
    assert cost["protocol"]["threads"] == 1 and cost["protocol"]["min_seconds"] >= 1.0
    for entry in models.values():
        # >= 1 s of calls was planned from the warm-up's per-call time; on a loaded machine the
        # median call of the timed rounds can come out faster than the warm-up's (measured:
        # 30 calls x 15.8 ms = 0.47 s), so the check asks for a quarter of the plan
        assert entry["timed_calls"] * entry["latency_ms_per_batch"] / 1000 >= 0.25
    report = (out / "report.md").read_text()
    assert "### Inference cost" in report and "| Masksembles (tiled) | predict_members |" in report
    assert "inference_ms_per_sample" not in (out / "results.csv").read_text()


def test_report_states_each_method_setting(bench):
    out, results = bench
    settings_table = results["protocol"]["method_settings"]
    assert settings_table["masksembles"]["n"] == 2 and settings_table["masksembles"]["epochs"] == 1
    report = (out / "report.md").read_text()
    assert "### Method settings" in report
    own = settings_table["masksembles"]
    assert own == settings(out).method_settings("masksembles")  # the recipe's tuned options
    assert (f"| Masksembles | n=2, scale={own['scale']:g}, placement={own['placement']}, "
            f"widen={own['widen']} | 1 | {own['drop_fraction']:.3f} | "
            f"{own['member_width']:.3f} | {results['methods']['masksembles']['params']:,} |"
            ) in report
    # --epochs and --members replace the tuned entries: the report does not call them tuned
    assert results["protocol"]["tuned"] is None and "not chosen by a tune run" in report

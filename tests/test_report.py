"""The report: mean ± std over seeds, the CSV, the table, and verdicts computed from numbers."""

from __future__ import annotations

import csv
import io
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ensemblekit import report


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20))
def test_mean_std_is_the_sample_statistics(values):
    summary = report.mean_std(values)
    assert summary["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert summary["std"] == pytest.approx(statistics.stdev(values), abs=1e-6)


def test_one_seed_has_zero_std():
    assert report.mean_std([0.25]) == {"mean": 0.25, "std": 0.0}


def _value(mean, std=0.0):
    return {"mean": mean, "std": std}


def _results(shift_ece: dict[str, float], *, std=0.001, ood=True):
    """Synthetic aggregated results with the given mean shift ECE per method."""
    methods = {}
    for method, value in shift_ece.items():
        entry = {
            "params": 1000,
            "num_members": 1 if method == "single" else 4,
            "test": {key: _value(0.5) for key in report.TEST_METRICS},
            "shift": {str(s): {key: _value(value + 0.01 * (s - 3), std)
                               for key in report.SHIFT_METRICS} for s in range(1, 6)},
            "shift_overall": {key: _value(value, std) for key in report.SHIFT_METRICS},
            "inference_ms_per_sample": 0.1,
            "train_seconds": 1.0,
        }
        entry["test"]["accuracy"] = _value(0.95)
        if ood:
            entry["ood"] = {"entropy": {key: _value(0.9 - value) for key in report.OOD_METRICS}}
        methods[method] = entry
    protocol = {"dataset": "digits", "backbone": "lenet", "width": 2.0, "hidden": None,
                "members": 4, "masksembles_scale": 2.0, "mc_dropout_p": 0.1, "mc_samples": 4,
                "train": {"epochs": 3, "batch_size": 64, "optimizer": "adamw", "lr": 0.003,
                          "weight_decay": 1e-4, "schedule": "cosine", "precision": "fp32",
                          "momentum": 0.9, "nesterov": True, "milestones": [], "gamma": 0.1},
                "corruptions": ["fog"], "severities": [1, 2, 3, 4, 5], "ood": "letters",
                "ood_status": "ok" if ood else "off", "ece_bins": 15,
                "aggregation": "softmax per member, then the mean over members",
                "std": "sample standard deviation over seeds (n - 1; 0 for one seed)"}
    return {"dataset": "digits", "seeds": [0, 1, 2], "protocol": protocol, "methods": methods}


def _verdicts(results):
    return {check["claim"].split(" ")[0] + " " + check["claim"].split(" ")[-1]: check["holds"]
            for check in report.orderings(results)}


def test_orderings_hold_when_the_numbers_say_so():
    results = _results({"single": 0.10, "mc_dropout": 0.09, "masksembles": 0.06,
                        "batchensemble": 0.095, "deep_ensemble": 0.04})
    checks = report.orderings(results)
    assert [check["holds"] for check in checks] == [True, True, True, True, True]
    first = checks[0]["detail"]
    assert "0.0400 ± 0.0010" in first and "0.1000 ± 0.0010" in first
    assert "lower at 5 of 5 severities" in first
    assert "larger than the spread over seeds" in first


def test_orderings_fail_when_the_numbers_say_so():
    results = _results({"single": 0.04, "mc_dropout": 0.03, "masksembles": 0.09,
                        "batchensemble": 0.05, "deep_ensemble": 0.06})
    checks = {check["claim"]: check for check in report.orderings(results)}
    assert not checks["Deep Ensembles are better calibrated than the single model"]["holds"]
    masks = checks["Masksembles lies between the single model and Deep Ensembles"]
    assert not masks["holds"] and "worse than both" in masks["detail"]
    assert not checks["Deep Ensembles are better calibrated than MC-Dropout"]["holds"]
    assert not checks["Deep Ensembles detect OOD inputs better than the single model"]["holds"]


def test_orderings_need_their_methods():
    assert report.orderings(_results({"single": 0.1, "masksembles": 0.05})) == []


def test_a_gap_within_the_spread_is_called_so():
    results = _results({"single": 0.050, "deep_ensemble": 0.049}, std=0.01)
    assert "smaller than the spread over seeds" in report.orderings(results)[0]["detail"]


def test_markdown_states_protocol_tables_verdicts_and_figures():
    text = report.markdown(_results({"single": 0.10, "masksembles": 0.06,
                                     "deep_ensemble": 0.04}))
    for fact in ("## Protocol", "3 epochs", "severities 1, 2, 3, 4, 5", "letters test set",
                 "| Masksembles | 1,000 |", "### ECE by severity",
                 "Deep Ensembles are better calibrated than the single model: **holds**",
                 "figures/ece_vs_severity.png", "figures/reliability.png"):
        assert fact in text


def test_markdown_says_when_ood_was_off():
    text = report.markdown(_results({"single": 0.1}, ood=False))
    assert "OOD: not evaluated (--ood none)" in text
    assert "## Out-of-distribution" not in text


def test_csv_has_one_number_per_row():
    rows = list(csv.DictReader(io.StringIO(report.results_csv(
        _results({"single": 0.1, "deep_ensemble": 0.05})))))
    ece3 = [r for r in rows if (r["method"], r["section"], r["group"], r["metric"])
            == ("deep_ensemble", "shift", "3", "ece")]
    assert len(ece3) == 1 and float(ece3[0]["mean"]) == pytest.approx(0.05)
    assert {r["section"] for r in rows} == {"test", "shift", "ood", "cost"}


def test_summary_table_lists_every_method_with_mean_and_std():
    table = report.summary_table(_results({"single": 0.1, "deep_ensemble": 0.05}))
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["method", "accuracy", "NLL", "ECE"]
    assert lines[2].startswith("single") and lines[3].startswith("deep_ensemble")
    assert "0.0500 ± 0.0010" in lines[3]
    assert "mean ± std over 3 seeds" in lines[-1]


def test_protocol_names_the_warm_up_and_the_precision_that_ran():
    results = _results({"single": 0.1})
    text = report.markdown(results)
    assert "cosine schedule, fp32 precision." in text
    assert "on GPU" not in text
    results["protocol"]["train"].update(precision="bf16", warmup_epochs=0.5)
    text = report.markdown(results)
    assert "0.5-epoch warm-up then cosine schedule, bf16 precision on GPU (fp32 on CPU)." in text


def test_markdown_links_only_the_figures_the_results_allow():
    results = _results({"single": 0.1, "deep_ensemble": 0.05}, ood=False)
    for entry in results["methods"].values():
        del entry["shift"], entry["shift_overall"]
    assert report.benchmark_figure_names(results) == ["reliability.png"]
    text = report.markdown(results)
    assert "figures/reliability.png" in text
    assert "figures/ece_vs_severity.png" not in text and "figures/ood_histograms.png" not in text


def test_an_undefined_metric_stays_none_and_prints_as_na():
    # Mutual information of a single model: None for every seed -> null in JSON, "n/a" in text.
    assert report.mean_std([None, None]) == {"mean": None, "std": None}
    results = _results({"single": 0.10, "deep_ensemble": 0.04})
    results["methods"]["single"]["ood"]["mutual_information"] = {
        key: report.mean_std([None]) for key in report.OOD_METRICS}
    results["methods"]["deep_ensemble"]["ood"]["mutual_information"] = {
        key: _value(0.7) for key in report.OOD_METRICS}
    assert "| Single model | mutual_information | n/a | n/a | n/a |" in report.markdown(results)
    rows = list(csv.DictReader(io.StringIO(report.results_csv(results))))
    undefined = [r for r in rows if r["method"] == "single" and r["group"] == "mutual_information"]
    assert len(undefined) == 3 and all(r["mean"] == r["std"] == "" for r in undefined)

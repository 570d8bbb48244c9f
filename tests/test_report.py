"""The report: mean ± std over seeds, the CSV, the table, and verdicts computed from numbers."""

from __future__ import annotations

import csv
import io
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ensemblekit import metrics, plots, report
from ensemblekit.experiments.benchmark_protocol import tuned_source
from ensemblekit.methods import get_method, method_entries, register_method, unregister_method
from ensemblekit.methods.claims import (
    BENCHMARK_CLAIMS,
    DIVERSITY_CLAIMS,
    Better,
    Between,
    ClaimSet,
    Lands,
)
from ensemblekit.report import diversity as diversity_report
from ensemblekit.report.benchmark import CLAIM_METRIC_LABELS
from ensemblekit.stats import CLAIM_METRICS, orderings


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
            "train_seconds": 1.0,
            "train": {"loss": _value(0.25, 0.01), "accuracy": _value(0.9125, 0.002),
                      "epochs": _value(3)},
            "validation": {key: _value(0.375) for key in report.VALIDATION_METRICS},
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
                "std": "sample standard deviation over seeds (n - 1; 0 for one seed)",
                "validation_fraction": 0.2,
                "method_settings": {m: {"n": 4, "scale": 2.0, "epochs": 3,
                                        "drop_fraction": 0.4667, "member_width": 0.5333}
                                    for m in shift_ece}}
    return {"dataset": "digits", "seeds": [0, 1, 2], "protocol": protocol, "methods": methods}


def _predictions(quality: dict[str, float], *, seeds=3, n=600, k=4, jitter=None, ood=True,
                 shift=True):
    """Synthetic per-example predictions ``{(method, seed): predictions}``: a method of
    quality q is right on the first round(q * n) examples of one fixed order (nested: a better
    method is right wherever a worse one is) with confidence 0.95 on its prediction, so a
    higher q means higher accuracy, lower NLL and lower ECE; under shift it is right on
    q - 0.1 of them; its OOD entropy scores separate in from out by 2 q. ``jitter``:
    ``{method: amount}`` moves that method's q by -amount, 0, +amount over three seeds."""
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, k, size=n))
    order = torch.from_numpy(rng.permutation(n))
    base_in, base_out = rng.normal(size=n), rng.normal(size=300)
    predictions = {}
    for method, q in quality.items():
        for seed in range(seeds):
            q_seed = q + (jitter or {}).get(method, 0.0) * (seed - 1)

            def confident(fraction):
                right = torch.zeros(n, dtype=torch.bool)
                right[order[: round(fraction * n)]] = True
                predicted = torch.where(right, labels, (labels + 1) % k)
                probs = torch.full((n, k), 0.05 / (k - 1), dtype=torch.float64)
                probs[torch.arange(n), predicted] = 0.95
                return probs, right

            probs, _ = confident(q_seed)
            entry = {"labels": labels, "test_probs": probs}
            if shift:
                _, right = confident(q_seed - 0.1)
                entry["shift"] = {"severities": ["1", "5"], "kinds": ["fog"],
                                  "confidence": torch.full((2, 1, n), 0.95, dtype=torch.float64),
                                  "correct": right.expand(2, 1, n).clone()}
            if ood:
                entry["ood_scores"] = {"entropy": {
                    "in": torch.from_numpy(base_in), "out": torch.from_numpy(base_out + 2 * q)}}
            predictions[(method, seed)] = entry
    return predictions


def _by_claim(checks):
    return {check["claim"].split(" (")[0]: check for check in checks}


MASKSEMBLES_BETWEEN = "Masksembles lies between the single model and Deep Ensembles"


def test_orderings_hold_when_the_numbers_say_so():
    checks = orderings(_predictions({"single": 0.80, "mc_dropout": 0.83,
                                     "masksembles": 0.86, "batchensemble": 0.81,
                                     "deep_ensemble": 0.90}), n_boot=400)
    assert [check["verdict"] for check in checks[:5]] == ["holds"] * 5
    # where Masksembles lands beside the "between" claim: better than MC-Dropout and
    # BatchEnsemble here
    position = [check for check in checks if check["claim"].startswith("Masksembles is better")]
    assert [check["verdict"] for check in position] == ["holds", "holds"]
    assert [c["metric"] for c in position[0]["comparisons"]] == list(CLAIM_METRICS)
    between = _by_claim(checks)[MASKSEMBLES_BETWEEN]
    assert [c["metric"] for c in between["comparisons"]] == [
        m for m in CLAIM_METRICS for _ in range(2)]
    first = checks[0]["comparisons"][0]
    assert first["metric"] == "ece" and first["claimed"] == "negative"
    # ECE = |accuracy - 0.95| here: 0.05 for Deep Ensembles, 0.15 for the single model.
    assert first["values"] == {"deep_ensemble": pytest.approx(0.05),
                               "single": pytest.approx(0.15)}
    difference = first["difference"]
    assert difference["estimate"] == pytest.approx(-0.10)
    assert difference["low"] <= difference["estimate"] <= difference["high"] < 0
    assert difference["n_boot"] == 400 and difference["level"] == 0.95


def test_orderings_fail_when_the_numbers_say_so():
    checks = _by_claim(orderings(_predictions({
        "single": 0.90, "mc_dropout": 0.92, "masksembles": 0.70, "batchensemble": 0.86,
        "deep_ensemble": 0.80}), n_boot=400))
    for claim in ("Deep Ensembles are better calibrated than the single model",
                  "Deep Ensembles are better calibrated than MC-Dropout",
                  "Deep Ensembles detect OOD inputs better than the single model",
                  MASKSEMBLES_BETWEEN):
        assert checks[claim]["verdict"] == "does not hold", claim


def test_between_in_the_wrong_order_does_not_hold_although_the_old_check_passed():
    # Deep Ensembles worse than the single model, Masksembles in the middle: numerically
    # "between", but in the opposite order to the claim (single < Masksembles < DE).
    quality = {"single": 0.90, "masksembles": 0.85, "deep_ensemble": 0.80}
    predictions = _predictions(quality, ood=False, shift=False)
    ece = {m: metrics.ece(predictions[(m, 0)]["test_probs"], predictions[(m, 0)]["labels"])
           for m in quality}
    low, high = sorted([ece["deep_ensemble"], ece["single"]])
    assert low <= ece["masksembles"] <= high  # the old check: "holds"
    between = _by_claim(orderings(predictions, n_boot=400))[MASKSEMBLES_BETWEEN]
    assert between["verdict"] == "does not hold"
    for comparison in between["comparisons"]:  # accuracy, NLL, ECE: each comparison reversed
        assert comparison["verdict"] == "does not hold"
    # Masksembles better than both: not between either.
    better = _predictions({"single": 0.80, "masksembles": 0.92, "deep_ensemble": 0.86},
                          ood=False, shift=False)
    verdicts = [c["verdict"] for c in _by_claim(orderings(better, n_boot=400))[
        MASKSEMBLES_BETWEEN]["comparisons"]]
    assert verdicts == ["holds", "does not hold"] * 3


def test_orderings_need_their_methods():
    assert orderings(_predictions({"single": 0.8, "masksembles": 0.85})) == []
    checks = orderings(_predictions({"mc_dropout": 0.8, "masksembles": 0.85}))
    assert [check["claim"].split(" (")[0] for check in checks] == [
        "Masksembles is better than MC-Dropout"]


def test_a_gap_within_the_noise_is_inconclusive():
    # Two examples' difference out of 600 on average, and seeds that disagree on its sign.
    checks = orderings(_predictions({"single": 0.850, "deep_ensemble": 0.853},
                                    jitter={"deep_ensemble": 0.03}, ood=False,
                                    shift=False), n_boot=400)
    assert checks[0]["verdict"] == "inconclusive"
    difference = checks[0]["comparisons"][0]["difference"]
    assert difference["low"] < 0 < difference["high"]


def _with_orderings(results, quality):
    results["orderings"] = orderings(_predictions(quality), n_boot=200)
    results["bootstrap"] = {"n_boot": 200, "seed": 0, "level": 0.95,
                            "resampled": "seeds and test examples"}
    return results


def test_markdown_states_protocol_tables_verdicts_and_figures():
    results = _with_orderings(_results({"single": 0.10, "masksembles": 0.06,
                                        "deep_ensemble": 0.04}),
                              {"single": 0.80, "masksembles": 0.86, "deep_ensemble": 0.90})
    text = report.markdown(results)
    for fact in ("## Protocol", "3 epochs", "severities 1, 2, 3, 4, 5", "letters test set",
                 "| Masksembles | n=4, scale=2 | 3 | 0.467 | 0.533 | 1,000 |",
                 "not chosen by a tune run", "### ECE by severity",
                 "**Deep Ensembles are better calibrated than the single model: holds.**",
                 "| ECE | Deep Ensemble better than Single model (difference < 0) | Deep "
                 "Ensemble 0.0500 vs Single model 0.1500 | -0.1000 [",
                 "paired bootstrap (200 replicates, seed 0)",
                 "figures/shift_vs_severity.png", "figures/reliability.png"):
        assert fact in text
    assert "- Validation: 20% of the training split held out" in text
    # Training fit next to the test metrics.
    assert ("| Masksembles | 3 | 0.2500 ± 0.0100 | 0.9125 ± 0.0020 | 0.3750 ± 0.0000 | "
            "0.3750 ± 0.0000 | 0.5000 ± 0.0000 | 0.9500 ± 0.0000 |") in text
    assert text.index("### Training fit") < text.index("## Under shift")
    # Settings from a tune run say so, naming the config and the command.
    results["protocol"]["tuned"] = "configs/digits_tuned.toml (`ensemblekit tune --dataset digits`)"
    text = report.markdown(results)
    assert ("chosen on the validation split (never the test set) by `ensemblekit tune`: "
            "configs/digits_tuned.toml") in text


def test_markdown_escapes_the_bars_of_the_closeness_claim():
    results = _with_orderings(_results({"single": 0.1, "batchensemble": 0.09,
                                        "deep_ensemble": 0.05}),
                              {"single": 0.80, "batchensemble": 0.81, "deep_ensemble": 0.90})
    line = next(line for line in report.markdown(results).splitlines()
                if line.startswith("| accuracy | \\|BatchEnsemble"))
    # Six cells: a bare | inside the claim would have split it.
    assert line.replace("\\|", "").count("|") == 6 and line.endswith("| holds |")


def test_markdown_without_predictions_checks_nothing():
    text = report.markdown(_results({"single": 0.1, "deep_ensemble": 0.05}))
    assert "Not checked: these need the single model" in text


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
    assert {r["section"] for r in rows} == {"test", "train", "validation", "shift", "ood",
                                            "cost"}
    fit = {(r["method"], r["section"], r["metric"]): float(r["mean"]) for r in rows
           if r["section"] in ("train", "validation")}
    assert fit[("single", "train", "accuracy")] == 0.9125
    assert fit[("deep_ensemble", "validation", "nll")] == 0.375


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
    assert "figures/shift_vs_severity.png" not in text
    assert "figures/ood_histograms.png" not in text and "figures/risk_coverage.png" not in text


def test_an_undefined_metric_stays_none_and_prints_as_na():
    # Mutual information of a single model: None for every seed -> null in JSON, "n/a" in text.
    assert report.mean_std([None, None]) == {"mean": None, "std": None}
    results = _results({"single": 0.10, "deep_ensemble": 0.04})
    results["methods"]["single"]["ood"]["mutual_information"] = {
        key: report.mean_std([None]) for key in report.OOD_METRICS}
    results["methods"]["deep_ensemble"]["ood"]["mutual_information"] = {
        key: _value(0.7) for key in report.OOD_METRICS}
    text = report.markdown(results)
    assert "| Single model | mutual_information | n/a | n/a | n/a |" in text
    # The AUROC table: one column per score, n/a where undefined (a score a method lacks too).
    header = next(line for line in text.splitlines() if line.startswith("| method | entropy"))
    assert header == "| method | entropy | mutual_information |"
    assert "| Single model | 0.8000 ± 0.0000 | n/a |" in text
    rows = list(csv.DictReader(io.StringIO(report.results_csv(results))))
    undefined = [r for r in rows if r["method"] == "single" and r["group"] == "mutual_information"]
    assert len(undefined) == 3 and all(r["mean"] == r["std"] == "n/a" for r in undefined)
    assert all(r["mean"] not in ("", "None", "nan") for r in rows)


def _one_seed(results):
    """``results`` as a one-seed run: every std 0 (as mean_std gives for one value)."""
    results["seeds"] = [0]

    def zero(node):
        if isinstance(node, dict):
            if set(node) == {"mean", "std"} and node["std"] is not None:
                node["std"] = 0.0
            for value in node.values():
                zero(value)
    zero(results["methods"])
    return results


def test_one_seed_prints_the_value_alone():
    results = _one_seed(_results({"single": 0.10, "deep_ensemble": 0.04}))
    text = report.markdown(results)
    assert "±" not in text.split("## Figures")[0].replace("mean ± std over seeds", "")
    assert "one seed: every number is that run's value" in text
    assert "| Single model | 0.9500 | 0.5000 | 0.5000 | 0.5000 |" in text
    table = report.summary_table(results)
    assert "±" not in table and "(one seed" in table.splitlines()[-1]
    # Several seeds keep the spread.
    assert "0.9500 ± 0.0000" in report.markdown(_results({"single": 0.1}))


def _calibrated(test_nll, *, before, after, temperature, n_validation=250):
    return {"mode": "pool", "n_validation": n_validation, "temperature": _value(temperature),
            "validation_nll": {"before": _value(before), "after": _value(after)},
            "validation_nll_fell": after <= before + report.NLL_TOLERANCE,
            "test": {key: _value(test_nll if key == "nll" else 0.25)
                     for key in report.CALIBRATED_METRICS}}


def test_ts_rows_say_which_runs_kept_t_1_and_why():
    results = _results({"single": 0.1})
    single = results["methods"]["single"]
    single["calibrated"] = _calibrated(0.07, before=0.03, after=0.03, temperature=1.0)
    single["calibrated"]["fitted_runs"] = 0
    single["calibrated"]["runs"] = [{"seed": 0, "temperature": 1.0, "validation_nll_before": 0.03,
                                     "validation_nll_after": 0.03, "validation_errors": 0,
                                     "test_nll_raw": 0.07, "test_nll_ts": 0.07,
                                     "fitted": False, "reason": "no validation error"}]
    text = report.markdown(results)
    assert "| Single model | 0/1 | 1.000 ± 0.000 |" in text
    assert "Not fitted, T = 1: Single model seed 0 (no validation error)." in text


def test_ts_rows_temperature_table_and_the_honest_sentence():
    results = _results({"single": 0.1, "deep_ensemble": 0.05})
    for entry in results["methods"].values():
        entry["test"].update({key: _value(0.125) for key in report.SELECTIVE_METRICS})
    single, ensemble = results["methods"]["single"], results["methods"]["deep_ensemble"]
    single["test"]["nll"] = _value(0.066)
    single["validation"]["accuracy"] = _value(0.996)
    # Validation improves, test worsens: T < 1 fitted on a validation set of few errors.
    single["calibrated"] = _calibrated(0.118, before=0.030, after=0.020, temperature=0.6)
    ensemble["calibrated"] = _calibrated(0.4, before=0.6, after=0.45, temperature=1.4)
    text = report.markdown(results)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| method | accuracy | NLL | Brier"))
    assert header.endswith("| AURC | E-AURC | AUGRC | risk @ 90% coverage | train s |")
    raw = lines.index(next(line for line in lines if line.startswith("| Single model | 0.9500")))
    assert lines[raw + 1] == ("| Single model +TS | 0.2500 ± 0.0000 | 0.1180 ± 0.0000 | "
                              "0.2500 ± 0.0000 | 0.2500 ± 0.0000 | 0.2500 ± 0.0000 | "
                              "0.2500 ± 0.0000 | 0.2500 ± 0.0000 | 0.2500 ± 0.0000 | as raw |")
    assert "| Deep Ensemble +TS |" in text
    # fitted: "-" for a summary written before the identification rule (no fitted count)
    assert ("| Single model | - | 0.6000 ± 0.0000 | 0.0300 ± 0.0000 | 0.0200 ± 0.0000 | "
            "0.0660 ± 0.0000 | 0.1180 ± 0.0000 |") in text
    assert "Not fitted, T = 1" not in text
    assert "Validation NLL after scaling <= before for every method and seed." in text
    sentence = next(line for line in lines if line.startswith("- Single model: +TS makes"))
    assert ("worse on average (0.0660 -> 0.1180, while the validation NLL fell 0.0300 -> "
            "0.0200).") in sentence
    assert "A T below 1 sharpens the prediction" in sentence
    assert not any(line.startswith("- Deep Ensemble: +TS makes") for line in lines)
    # Per run: the seed where it worsened, with its T and the validation errors it saw.
    ensemble["calibrated"]["runs"] = [
        {"seed": 0, "temperature": 0.434, "validation_nll_before": 0.0185,
         "validation_nll_after": 0.0114, "validation_errors": 2, "test_nll_raw": 0.0661,
         "test_nll_ts": 0.1181},
        {"seed": 1, "temperature": 1.2, "validation_nll_before": 0.04,
         "validation_nll_after": 0.03, "validation_errors": 3, "test_nll_raw": 0.08,
         "test_nll_ts": 0.07}]
    sentence = next(line for line in report.markdown(results).splitlines()
                    if line.startswith("- Deep Ensemble: +TS makes"))
    assert sentence.startswith(
        "- Deep Ensemble: +TS makes the test NLL worse in seed 0 (0.0661 -> 0.1181, T = 0.434, "
        "validation NLL 0.0185 -> 0.0114, 2 validation errors).")
    assert "seed 1" not in sentence and "A T below 1" in sentence
    # An unfitted run keeps T = 1; its +TS NLL differing in the last digits is not "worse".
    ensemble["calibrated"]["runs"].append(
        {"seed": 2, "temperature": 1.0, "fitted": False, "reason": "0 validation errors",
         "validation_nll_before": 0.0067, "validation_nll_after": 0.0067,
         "validation_errors": 0, "test_nll_raw": 0.0752, "test_nll_ts": 0.0752 + 1e-9})
    sentence = next(line for line in report.markdown(results).splitlines()
                    if line.startswith("- Deep Ensemble: +TS makes"))
    assert "seed 2" not in sentence and "seed 0" in sentence
    rows = list(csv.DictReader(io.StringIO(report.results_csv(results))))
    ts = {(r["method"], r["section"], r["metric"]): r["mean"] for r in rows}
    assert float(ts[("single", "test+TS", "nll")]) == 0.118
    assert float(ts[("single", "calibration", "temperature")]) == 0.6
    assert float(ts[("deep_ensemble", "calibration", "validation_nll_after")]) == 0.45
    # A fit that raised the validation NLL is called out, not hidden.
    ensemble["calibrated"] = _calibrated(0.4, before=0.6, after=0.61, temperature=1.4)
    assert "**Validation NLL rose after scaling for Deep Ensemble" in report.markdown(results)


def test_calibrated_summary_checks_every_seed():
    def run(before, after, t):
        return {"calibration": {"mode": "pool", "temperatures": [t], "n_validation": 250,
                                "validation_nll": {"before": before, "after": after}},
                "test": {"nll": 0.2, "accuracy": 0.9}}
    summary = report.calibrated_summary([run(0.3, 0.2, 0.8), run(0.3, 0.3, 1.0)])
    assert summary["validation_nll_fell"] is True
    assert summary["temperature"]["mean"] == pytest.approx(0.9)
    assert summary["temperature"]["std"] == pytest.approx(statistics.stdev([0.8, 1.0]))
    assert set(summary["test"]) == {"nll", "accuracy"}
    assert report.calibrated_summary([run(0.3, 0.2, 0.8), run(0.3, 0.31, 1.0)])[
        "validation_nll_fell"] is False


def test_per_corruption_cells_in_csv_and_the_severity_5_table():
    results = _results({"single": 0.1, "deep_ensemble": 0.05})
    for index, entry in enumerate(results["methods"].values()):
        entry["shift_by_kind"] = {
            str(s): {kind: {key: _value(0.1 * s + 0.01 * k + 0.001 * index, 0.002)
                            for key in report.SHIFT_METRICS}
                     for k, kind in enumerate(("fog", "contrast"))} for s in (1, 5)}
    text = report.markdown(results)
    assert "### Per corruption kind at severity 5" in text
    # one row per kind, one column per method: severity 5, contrast (k = 1)
    assert "| contrast | 0.5100 ± 0.0020 | 0.5110 ± 0.0020 |" in text
    assert "**Brier**" in text and "### Brier by severity" in text
    rows = list(csv.DictReader(io.StringIO(report.results_csv(results))))
    cells = {(r["method"], r["group"], r["metric"]): (float(r["mean"]), float(r["std"]))
             for r in rows if r["section"] == "shift_kind"}
    assert len(cells) == 2 * 2 * 2 * len(report.SHIFT_METRICS)
    assert cells[("deep_ensemble", "fog/1", "brier")] == (pytest.approx(0.101), 0.002)


def test_risk_coverage_mean_matches_a_numpy_reference():
    rng = np.random.default_rng(3)
    runs = []
    for _ in range(2):
        probs = rng.dirichlet(np.ones(4) * 0.5, size=97)
        probs[:10] = probs[0]  # ties: they enter together
        labels = rng.integers(0, 4, size=97)
        runs.append({"test_probs": torch.from_numpy(probs), "labels": torch.from_numpy(labels)})
    curve = report.risk_coverage_mean(runs, points=20)
    assert curve["coverage"] == pytest.approx([j / 20 for j in range(1, 21)])
    expected = []
    for run in runs:
        probs, labels = run["test_probs"].numpy(), run["labels"].numpy()
        confidence, wrong = probs.max(1), probs.argmax(1) != labels
        ordered = np.sort(confidence)[::-1]
        risks = []
        for j in range(1, 21):
            threshold = ordered[int(np.ceil(j / 20 * len(ordered))) - 1]
            risks.append(wrong[confidence >= threshold].mean())
        expected.append(risks)
    assert curve["risk"] == pytest.approx(np.mean(expected, axis=0).tolist(), abs=1e-12)


def test_tuned_source_names_the_recipe_only_while_its_options_run(recipes):
    from ensemblekit.experiments import BenchmarkSettings
    from ensemblekit.experiments.recipes import recipe_for

    # The default benchmark runs the recipe's tuned options: the report names their source.
    default = tuned_source(BenchmarkSettings.from_sources())
    assert default == recipe_for("digits")["tuned"] and "ensemblekit tune" in default
    sentence = "configs/digits_tuned.toml, from `ensemblekit tune --dataset digits`"
    digits = recipes / "digits.toml"
    text = digits.read_text()
    plain = "\n".join(line for line in text[:text.index("[method_options.")].splitlines()
                      if not line.startswith("tuned ="))
    digits.write_text(f"tuned = {sentence!r}\n{plain}\n[method_options.masksembles]\n"
                      "scale = 3.0\n")
    assert tuned_source(BenchmarkSettings.from_sources()) == sentence
    # Another scale (a flag or a config) is not the tuned setting any more.
    assert tuned_source(BenchmarkSettings.from_sources(overrides={"scale": 2.0})) is None
    changed = {"method_options": {"masksembles": {"scale": 4.0}}}
    assert tuned_source(BenchmarkSettings.from_sources(overrides=changed)) is None
    digits.write_text(f"{plain}\n[method_options.masksembles]\nscale = 3.0\n")
    assert tuned_source(BenchmarkSettings.from_sources()) is None

def test_a_new_claim_is_one_entry_of_data_evaluated_in_its_place():
    claims = ClaimSet(claims=(
        Between("BatchEnsemble between", method="batchensemble", low="single",
                high="deep_ensemble", metrics=("ece",)),
        Better("needs Masksembles, which did not run", better="masksembles", worse="single",
               metrics=("nll",)),
        Lands("{method} vs {other}", method="deep_ensemble",
              others=("single", "masksembles", "mc_dropout"), metrics=("accuracy",)),
    ), unchecked="none")
    checks = orderings(_predictions({"single": 0.80, "mc_dropout": 0.83, "batchensemble": 0.85,
                                     "deep_ensemble": 0.90}, ood=False, shift=False),
                       n_boot=200, claims=claims)
    assert [c["claim"] for c in checks] == ["BatchEnsemble between",
                                            "Deep Ensemble vs Single model",
                                            "Deep Ensemble vs MC-Dropout"]
    assert [c["verdict"] for c in checks] == ["holds"] * 3
    assert [c["statement"] for c in checks[0]["comparisons"]] == [
        "BatchEnsemble better than Single model", "Deep Ensemble better than BatchEnsemble"]


def test_the_benchmark_claims_speak_of_the_metrics_the_report_names():
    for claim in BENCHMARK_CLAIMS.claims:
        assert set(claim.metrics) <= set(CLAIM_METRICS) <= set(CLAIM_METRIC_LABELS)


def test_labels_come_from_the_registry_and_variants_derive_theirs():
    for entry in method_entries():
        assert report.method_label(entry.name) == entry.label
    assert report.method_label("masksembles_tiled") == "Masksembles (tiled)"
    assert report.method_label("batchensemble_ones") == "BatchEnsemble (init ones)"
    assert report.method_label("batchensemble_random_sign") == "BatchEnsemble (init random_sign)"
    assert report.method_label("something else") == "something else"
    assert report.short_label("deep_ensemble") == "DE"


def test_a_method_registered_later_is_labelled_and_drawn_from_its_entry():
    register_method("throwaway", label="Throwaway", color="#123456", marker="P")(
        get_method("single"))
    try:
        assert report.method_label("throwaway") == "Throwaway"
        assert report.method_label("throwaway_tiled") == "Throwaway (tiled)"
        assert report.short_label("throwaway") == "Throwaway"
        assert plots.method_style("throwaway") == ("#123456", "P")
        assert plots.method_style("throwaway_tiled") == ("#123456", "P")
    finally:
        unregister_method("throwaway")


def test_one_formatter_reproduces_each_reports_style():
    value = {"mean": 0.123456, "std": 0.01}
    assert report.pm(value) == "0.1235 ± 0.0100"  # the benchmark
    assert report.pm({"mean": 12.3456, "std": 1.0}) == "12.346 ± 1.000"
    assert report.pm(value, alone=True) == "0.1235"  # the benchmark, one seed
    assert report.pm({"mean": 0.5, "std": 0.0}, digits=4, alone_if_exact=True) == "0.5000"
    assert report.pm(value, digits=4, alone_if_exact=True) == "0.1235 ± 0.0100"  # tune
    floor = {"mean": 1.0, "std": 0.0, "by_definition": True}
    assert report.pm(floor, digits=4, mark_floor=True) == "1 (floor)"  # the diversity study
    assert report.pm(floor, digits=4) == "1.0000 ± 0.0000"  # the sweep
    assert report.pm({"mean": None, "std": None}) == "n/a"


def test_json_ready_keys_tuples_paths_and_undefined_values():
    value = {1: (0.5, Path("runs") / "x"), "undefined": [float("nan"), float("inf")]}
    kept = report.json_ready(value)
    assert kept["1"] == [0.5, str(Path("runs") / "x")]
    assert all(not math.isfinite(v) for v in kept["undefined"])
    assert report.json_ready(value, nonfinite_as_null=True)["undefined"] == [None, None]


def test_diversity_verdict_lines_name_the_methods_by_their_short_labels():
    verdicts = [{"claim": "BE tracks", "reference": "single", "verdict": "inconclusive",
                 "comparisons": [{"metric": "accuracy", "batchensemble": 0.98,
                                  "reference": 0.97, "deep_ensemble": 0.99,
                                  "closeness": {"estimate": -0.01, "low": -0.02, "high": 0.001},
                                  "verdict": "inconclusive"}]}]
    assert diversity_report.verdict_lines(verdicts) == [
        "- BE tracks: **inconclusive**. accuracy: BE 0.9800, single 0.9700, DE 0.9900; "
        "|BE-single| - |BE-DE| = -0.0100 [-0.0200, +0.0010] (inconclusive).",
        "- Intervals: 95 % paired bootstrap over seeds and test examples (2000 replicates; 400 "
        "for CKA); a comparison holds when |BE - reference| - |BE - DE| lies below 0 "
        "throughout."]
    assert diversity_report.verdict_lines([]) == [DIVERSITY_CLAIMS.unchecked]

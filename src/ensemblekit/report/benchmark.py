"""Benchmark results over seeds: the ``results.json`` content, ``results.csv`` and the table
the CLI prints.

Input: one record per (method, seed) run, as written by
:func:`ensemblekit.experiments.benchmark.run_one`, and the protocol the experiment ran under.
Output: every metric as ``{"mean", "std"}`` over seeds (``std`` is the sample standard
deviation, n - 1 in the denominator; 0 for a single seed). Shift metrics are first averaged
over corruption kinds per severity within each run, then over seeds. Training fit (the last
epoch's training loss and accuracy) and the validation metrics sit beside the test metrics, so
under-fitting shows.

The verdicts on the papers' orderings (:func:`ensemblekit.stats.orderings`) come from a paired
bootstrap over seeds and test examples on each run's per-example predictions, never written in
advance.

Beside them: each method's "+TS" twin (the same models, a temperature fitted on the validation
split), selective prediction (AURC, E-AURC, AUGRC, risk at 90% coverage, the risk-coverage
curve), the AUROC of every OOD score (None / "n/a" where a score is undefined for the method,
never a number), every (corruption kind, severity) cell, each method's setting, and the
inference cost measured once per benchmark in one process (ratios to the single model). With
one seed the report prints each value alone (a std of 0 over one run says nothing).
"""

from __future__ import annotations

import csv
import io
import math

import torch

from ..metrics import risk_coverage_curve
from ..stats import BOOTSTRAP_SEED, DEFAULT_N_BOOT, orderings
from ._format import average, mean_std, pm

TEST_METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "mce")
#: Selective prediction of the mean prediction (confidence = its top probability): area under
#: the risk-coverage curve, its excess over the oracle, the generalized AURC, the risk when
#: the 90% most confident inputs are accepted (``ensemblekit.metrics.selective``).
SELECTIVE_METRICS = ("aurc", "e_aurc", "augrc", "risk_at_90_coverage")
#: The "+TS" metrics (temperature-scaled test set) kept per method.
CALIBRATED_METRICS = ("accuracy", "nll", "brier", "ece", *SELECTIVE_METRICS)
#: The points of the averaged risk-coverage curve (coverage 0.5%, 1%, ..., 100%).
RISK_COVERAGE_POINTS = 200
#: Tolerance of the "validation NLL after <= before" check (float64 rounding of the fit).
NLL_TOLERANCE = 1e-9
#: The ensemble prediction's metrics on the validation split (as in the run records).
VALIDATION_METRICS = ("accuracy", "nll", "brier", "ece")
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
OOD_METRICS = ("auroc", "aupr", "fpr95")
#: The OOD scores, in the report's column order.
OOD_SCORES = ("msp", "entropy", "mutual_information", "variation_ratio", "max_logit", "energy",
              "energy_members")
#: How the report names each metric.
METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "brier": "Brier", "ece": "ECE",
                 "adaptive_ece": "adaptive ECE", "mce": "MCE", "auroc": "AUROC",
                 "aupr": "AUPR", "fpr95": "FPR@95%TPR", "aurc": "AURC", "e_aurc": "E-AURC",
                 "augrc": "AUGRC", "risk_at_90_coverage": "risk @ 90% coverage"}
#: The metrics the claims are tested on, as the report names them.
CLAIM_METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "ece": "ECE",
                       "shift_ece": "shift ECE", "auroc": "OOD AUROC"}

#: The cost measurement's name of a method also timed tiled (``predict_members``) beside its
#: compiled inference path: ``<method>_tiled``.
TILED_SUFFIX = "_tiled"
#: The benchmark's figures and their captions, in the report's order.
FIGURES = (
    ("shift_vs_severity.png", "Accuracy and ECE against corruption severity (mean ± std over "
                              "seeds)"),
    ("risk_coverage.png", "Risk-coverage curves on the clean test set (mean over seeds)"),
    ("reliability.png", "Reliability diagrams on the clean test set (all seeds pooled)"),
    ("ood_histograms.png", "OOD scores, in- vs out-of-distribution (all seeds pooled)"),
    ("verdicts.png", "The orderings' differences with their 95% bootstrap intervals"),
)


def benchmark_figure_names(results: dict) -> list[str]:
    """The figures a benchmark's results allow: severity curves need shift metrics, the
    histograms OOD metrics for every method, the verdicts' intervals at least one checked
    ordering; the reliability diagrams always exist."""
    entries = results["methods"].values()
    needs = {"shift_vs_severity.png": "shift", "ood_histograms.png": "ood",
             "risk_coverage.png": "risk_coverage"}
    names = [name for name, _ in FIGURES
             if name not in needs or all(needs[name] in entry for entry in entries)]
    if not results.get("orderings"):
        names.remove("verdicts.png")
    return names


def aggregate(records: dict, protocol: dict, predictions: dict | None = None,
              cost: dict | None = None) -> dict:
    """Results over seeds from ``{(method, seed): record}``: the ``results.json`` content.

    ``protocol``: what was run (the experiment's account of its settings, written as
    ``results["protocol"]``; its ``"dataset"`` names the dataset).

    Per method: ``train`` (``loss``, ``accuracy`` of the last training epoch, ``epochs``) and,
    when every run has one, ``validation`` (:data:`VALIDATION_METRICS` of the ensemble
    prediction on the validation split), each ``{"mean", "std"}``. With ``predictions``
    (``{(method, seed): predictions}`` as saved by the benchmark) also ``orderings`` (see
    :func:`ensemblekit.stats.orderings`), ``bootstrap`` (how the intervals were drawn) and,
    per method, ``risk_coverage`` (:func:`risk_coverage_mean`).

    Also per method, where every run has them: the :data:`SELECTIVE_METRICS` in ``test``;
    ``calibrated`` (the "+TS" evaluation: :func:`calibrated_summary`); ``shift_by_kind``
    (``{severity: {kind: {metric: {"mean", "std"}}}}``, every corrupted set). With ``cost``
    (of :func:`ensemblekit.experiments.benchmark.measure_benchmark_costs`): ``results["cost"]``
    as measured and each method's ``cost`` entry (and ``cost_tiled`` for a method also
    timed tiled: :data:`TILED_SUFFIX`).
    """
    methods = list(dict.fromkeys(method for method, _ in records))
    seeds = sorted({seed for _, seed in records})
    ood_records = [r for r in records.values() if "ood" in r]
    results = {
        "dataset": protocol["dataset"],
        "seeds": seeds,
        "protocol": protocol,
        "methods": {},
    }
    for method in methods:
        runs = [records[(method, seed)] for seed in seeds if (method, seed) in records]
        entry = {
            "params": runs[0]["params"],
            "num_members": runs[0]["num_members"],
            "test": {key: mean_std([r["test"][key] for r in runs])
                     for key in (*TEST_METRICS, *SELECTIVE_METRICS)
                     if all(key in r["test"] for r in runs)},
        }
        if all("calibrated" in r for r in runs):
            entry["calibrated"] = calibrated_summary([r["calibrated"] for r in runs])
            entry["calibrated"]["runs"] = calibrated_runs(runs)
        if all("shift_mean" in r for r in runs):
            severities = list(runs[0]["shift_mean"])
            entry["shift"] = {
                severity: {key: mean_std([r["shift_mean"][severity][key] for r in runs])
                           for key in SHIFT_METRICS}
                for severity in severities
            }
            entry["shift_by_kind"] = {
                severity: {kind: {key: mean_std([r["shift"][severity][kind][key] for r in runs])
                                  for key in SHIFT_METRICS}
                           for kind in runs[0]["shift"][severity]}
                for severity in severities
            } if all("shift" in r for r in runs) else {}
            entry["shift_overall"] = {
                key: mean_std([average([r["shift_mean"][s][key] for s in severities])
                               for r in runs])
                for key in SHIFT_METRICS
            }
        if ood_records and all("ood" in r for r in runs):
            entry["ood"] = {
                score: {key: mean_std([r["ood"][score][key] for r in runs])
                        for key in OOD_METRICS}
                for score in runs[0]["ood"]
            }
        if cost is not None:
            entry["cost"] = cost["models"].get(method)
            if f"{method}{TILED_SUFFIX}" in cost["models"]:
                entry["cost_tiled"] = cost["models"][f"{method}{TILED_SUFFIX}"]
        entry["train_seconds"] = average([r["train"]["seconds"] for r in runs])
        entry["train"] = {key: mean_std([r["train"][key] for r in runs])
                          for key in ("loss", "accuracy", "epochs")}
        if all(r.get("validation") for r in runs):
            entry["validation"] = {key: mean_std([r["validation"][key] for r in runs])
                                   for key in VALIDATION_METRICS}
        results["methods"][method] = entry
    if predictions is not None:
        results["bootstrap"] = {"n_boot": DEFAULT_N_BOOT, "seed": BOOTSTRAP_SEED, "level": 0.95,
                                "resampled": "seeds and test examples with replacement, the "
                                             "same draws for every method (OOD: in- and "
                                             "out-of-distribution examples separately)"}
        results["orderings"] = orderings(predictions)
        for method, entry in results["methods"].items():
            runs = [predictions[(method, seed)] for seed in seeds if (method, seed) in predictions]
            if runs:
                entry["risk_coverage"] = risk_coverage_mean(runs)
    if cost is not None:
        results["cost"] = cost
    return results


def calibrated_summary(calibrated: list[dict]) -> dict:
    """The "+TS" evaluations of one method's runs (each a record's ``"calibrated"``, from
    :func:`~ensemblekit.experiments.calibrated.calibrated_evaluation`) over seeds:
    ``{"mode", "n_validation", "temperature", "validation_nll": {"before", "after"}, "test":
    {metric}, "ood": {score: {metric}}}``, each value ``{"mean", "std"}`` (``temperature``: the
    mean of a run's temperatures, one in pool mode), and ``"validation_nll_fell"``: whether in
    every run the validation NLL after scaling is at most the one before (it must be: the fit
    minimises it and includes T = 1; :data:`NLL_TOLERANCE` for float rounding).
    """
    fits = [c["calibration"] for c in calibrated]
    summary = {
        "mode": fits[0]["mode"],
        "n_validation": fits[0]["n_validation"],
        "temperature": mean_std([average(f["temperatures"]) for f in fits]),
        "validation_nll": {side: mean_std([f["validation_nll"][side] for f in fits])
                           for side in ("before", "after")},
        # runs whose every temperature was identified by the validation data (the others
        # kept T = 1: ensemblekit.calibration's "identified or not applied" rule)
        "fitted_runs": sum(all(f.get("fitted", [True])) for f in fits),
        "validation_nll_fell": all(f["validation_nll"]["after"]
                                   <= f["validation_nll"]["before"] + NLL_TOLERANCE
                                   for f in fits),
        "test": {key: mean_std([c["test"][key] for c in calibrated])
                 for key in CALIBRATED_METRICS if all(key in c["test"] for c in calibrated)},
    }
    if all("ood" in c for c in calibrated):
        summary["ood"] = {score: {key: mean_std([c["ood"][score][key] for c in calibrated])
                                  for key in OOD_METRICS}
                          for score in calibrated[0]["ood"]}
    return summary


def calibrated_runs(runs: list[dict]) -> list[dict]:
    """Per run (records with ``"calibrated"``): ``{"seed", "temperature", "validation_nll_before",
    "validation_nll_after", "validation_errors" (None without validation metrics),
    "test_nll_raw", "test_nll_ts"}``: what the report needs to say where scaling worsened the
    test NLL, and why."""
    rows = []
    for record in runs:
        fit = record["calibrated"]["calibration"]
        validation = record.get("validation")
        errors = (None if not validation else
                  round((1.0 - validation["accuracy"]) * fit["n_validation"]))
        rows.append({"seed": record["seed"], "temperature": average(fit["temperatures"]),
                     "validation_nll_before": fit["validation_nll"]["before"],
                     "validation_nll_after": fit["validation_nll"]["after"],
                     "validation_errors": errors, "test_nll_raw": record["test"]["nll"],
                     "test_nll_ts": record["calibrated"]["test"]["nll"],
                     "fitted": all(fit.get("fitted", [True])),
                     "reason": next((r for r in fit.get("reasons", []) if r), None)})
    return rows


def risk_coverage_mean(runs: list[dict], points: int = RISK_COVERAGE_POINTS) -> dict:
    """The risk-coverage curve of the mean prediction on the clean test set, averaged over
    runs: ``{"coverage": [c_1..c_P], "risk": [mean over runs]}`` at coverage ``c_j = j / P``.

    ``runs``: per-example predictions (``"labels"`` (N,), ``"test_probs"`` (N, K)); confidence
    is the top mean probability. Each run's curve
    (:func:`ensemblekit.metrics.risk_coverage_curve`) is read at the first threshold whose
    coverage reaches ``c_j`` (the curve is a step function; ties enter together).
    """
    grid = torch.arange(1, points + 1, dtype=torch.float64) / points
    curves = []
    for run in runs:
        confidence, predicted = run["test_probs"].max(dim=-1)
        coverage, risk, _ = risk_coverage_curve(confidence, predicted == run["labels"])
        index = torch.searchsorted(coverage, grid - 1e-12).clamp(max=len(coverage) - 1)
        curves.append(risk[index])
    return {"coverage": grid.tolist(), "risk": torch.stack(curves).mean(0).tolist()}


#: The cost entries written to the CSV (see ``ensemblekit.experiments.cost.measure_costs``).
COST_CSV_KEYS = ("params", "flops_per_sample", "inference_flops_per_sample",
                 "latency_ms_per_sample", "params_ratio", "flops_ratio", "inference_flops_ratio",
                 "latency_ratio", "latency_ratio_to_single")


def results_csv(results: dict) -> str:
    """One row per number: ``method,section,group,metric,mean,std``.

    Sections: ``test``, ``test+TS`` (temperature-scaled), ``calibration`` (``temperature``,
    ``validation_nll_before``/``_after``), ``train``, ``validation``, ``shift`` (group: the
    severity, or ``mean``), ``shift_kind`` (group ``kind/severity``: every corrupted set),
    ``ood`` and ``ood+TS`` (group: the score), ``cost`` (one measurement: std empty; method
    ``masksembles_tiled`` for the tiled pass). An undefined value (e.g. mutual information of
    one member) is ``n/a``, never a number or an empty cell.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "section", "group", "metric", "mean", "std"])

    def row(method, section, group, metric, value):
        writer.writerow([method, section, group, metric, _csv_value(value["mean"]),
                         _csv_value(value["std"])])

    for method, entry in results["methods"].items():
        for metric, value in entry["test"].items():
            row(method, "test", "", metric, value)
        calibrated = entry.get("calibrated")
        if calibrated:
            for metric, value in calibrated["test"].items():
                row(method, "test+TS", "", metric, value)
            row(method, "calibration", "", "temperature", calibrated["temperature"])
            for side in ("before", "after"):
                row(method, "calibration", "", f"validation_nll_{side}",
                    calibrated["validation_nll"][side])
        for section in ("train", "validation"):
            for metric, value in entry.get(section, {}).items():
                row(method, section, "", metric, value)
        for severity, metrics in entry.get("shift", {}).items():
            for metric, value in metrics.items():
                row(method, "shift", severity, metric, value)
        for metric, value in entry.get("shift_overall", {}).items():
            row(method, "shift", "mean", metric, value)
        for severity, kinds in entry.get("shift_by_kind", {}).items():
            for kind, metrics in kinds.items():
                for metric, value in metrics.items():
                    row(method, "shift_kind", f"{kind}/{severity}", metric, value)
        for section, ood in (("ood", entry.get("ood", {})),
                             ("ood+TS", (calibrated or {}).get("ood", {}))):
            for score, metrics in ood.items():
                for metric, value in metrics.items():
                    row(method, section, score, metric, value)
        for name, cost in ((method, entry.get("cost")),
                           (f"{method}{TILED_SUFFIX}", entry.get("cost_tiled"))):
            if cost:
                for key in COST_CSV_KEYS:
                    row(name, "cost", "", key, {"mean": cost[key], "std": ""})
        if not entry.get("cost"):
            row(method, "cost", "", "params", {"mean": entry["params"], "std": ""})
    return buffer.getvalue()


def _csv_value(value):
    """A CSV cell: ``n/a`` for an undefined (None or nan) value, the value otherwise."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return value


def formatter(results: dict):
    """:func:`~._format.pm` for these results: the value alone when they hold one seed."""
    alone = len(results["seeds"]) == 1
    return lambda value: pm(value, alone=alone)


def summary_table(results: dict) -> str:
    """The plain-text table the CLI prints: one row per method, mean ± std over seeds (the
    value alone for one seed), with "+TS" NLL/ECE and the latency ratio when measured."""
    pm = formatter(results)
    header = ["method", "accuracy", "NLL", "ECE"]
    has_shift = any("shift_overall" in e for e in results["methods"].values())
    has_ood = any("ood" in e for e in results["methods"].values())
    if has_shift:
        header += ["shift acc", "shift ECE"]
    if has_ood:
        header += ["OOD AUROC"]
    has_fit = all("train" in e for e in results["methods"].values())
    if has_fit:
        header += ["train acc"]
    has_ts = all("calibrated" in e for e in results["methods"].values())
    if has_ts:
        header += ["NLL +TS", "ECE +TS"]
    has_cost = all(e.get("cost") for e in results["methods"].values())
    if has_cost:
        header += ["latency x"]
    rows = []
    for method, entry in results["methods"].items():
        test = entry["test"]
        row = [method, pm(test["accuracy"]), pm(test["nll"]), pm(test["ece"])]
        if has_shift:
            overall = entry.get("shift_overall")
            row += [pm(overall["accuracy"]), pm(overall["ece"])] if overall else ["-", "-"]
        if has_ood:
            ood = entry.get("ood", {}).get("entropy")
            row += [pm(ood["auroc"]) if ood else "-"]
        if has_fit:
            row += [pm(entry["train"]["accuracy"])]
        if has_ts:
            row += [pm(entry["calibrated"]["test"]["nll"]), pm(entry["calibrated"]["test"]["ece"])]
        if has_cost:
            row += [f"{entry['cost']['latency_ratio']:.2f}"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    notes = []
    if has_shift:
        notes.append("shift: mean over corruption kinds and severities")
    if has_ood:
        notes.append(f"OOD AUROC: entropy of the mean prediction, vs {results['protocol']['ood']}")
    if has_fit:
        notes.append("train acc: last training epoch")
    if has_ts:
        notes.append("+TS: temperature fitted on the validation split")
    if has_cost:
        notes.append("latency x: ratio to the single model, like for like, one process")
    text = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    seeds = len(results["seeds"])
    text.append(("(one seed" if seeds == 1 else f"(mean ± std over {seeds} seeds")
                + (f"; {'; '.join(notes)}" if notes else "") + ")")
    return "\n".join(text)



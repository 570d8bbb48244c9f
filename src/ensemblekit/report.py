"""Benchmark results over seeds: ``results.json``, ``results.csv``, ``report.md`` and a table.

Input: one record per (method, seed) run, as written by
:func:`ensemblekit.experiments.benchmark.run_one`. Output: every metric as
``{"mean", "std"}`` over seeds (``std`` is the sample standard deviation, n - 1 in the
denominator; 0 for a single seed). Shift metrics are first averaged over corruption kinds per
severity within each run, then over seeds. Training fit (the last epoch's training loss and
accuracy) and the validation metrics sit beside the test metrics, so under-fitting shows.

The report's verdicts on the papers' orderings (:func:`orderings`) come from a paired bootstrap
over seeds and test examples (:mod:`ensemblekit.experiments.verdicts`) on each run's
per-example predictions, never written in advance.

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
import json
import math
from pathlib import Path

import torch

from .atomic import atomic_write_text

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
#: The seed of the bootstrap draws behind the verdicts (fixed: the same report twice).
BOOTSTRAP_SEED = 0
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
OOD_METRICS = ("auroc", "aupr", "fpr95")
#: The OOD scores, in the report's column order.
OOD_SCORES = ("msp", "entropy", "mutual_information", "variation_ratio", "max_logit", "energy",
              "energy_members")

METHOD_LABELS = {
    "single": "Single model",
    "mc_dropout": "MC-Dropout",
    "masksembles": "Masksembles",
    "batchensemble": "BatchEnsemble",
    "deep_ensemble": "Deep Ensemble",
}
_METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "brier": "Brier", "ece": "ECE",
                  "adaptive_ece": "adaptive ECE", "mce": "MCE", "auroc": "AUROC",
                  "aupr": "AUPR", "fpr95": "FPR@95%TPR", "aurc": "AURC", "e_aurc": "E-AURC",
                  "augrc": "AUGRC", "risk_at_90_coverage": "risk @ 90% coverage"}
_FIGURES = (
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
    names = [name for name, _ in _FIGURES
             if name not in needs or all(needs[name] in entry for entry in entries)]
    if not results.get("orderings"):
        names.remove("verdicts.png")
    return names


def mean_std(values) -> dict:
    """``{"mean", "std"}`` of a list of numbers (sample std; 0 for one value); both None when
    the values are None (a metric undefined for the method, e.g. mutual information of one
    member)."""
    if any(v is None for v in values):
        return {"mean": None, "std": None}
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return {"mean": mean, "std": 0.0}
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return {"mean": mean, "std": math.sqrt(variance)}


def aggregate(records: dict, settings, predictions: dict | None = None,
              cost: dict | None = None) -> dict:
    """Results over seeds from ``{(method, seed): record}``: the ``results.json`` content.

    Per method: ``train`` (``loss``, ``accuracy`` of the last training epoch, ``epochs``) and,
    when every run has one, ``validation`` (:data:`VALIDATION_METRICS` of the ensemble
    prediction on the validation split), each ``{"mean", "std"}``. With ``predictions``
    (``{(method, seed): predictions}`` as saved by the benchmark) also ``orderings`` (see
    :func:`orderings`), ``bootstrap`` (how the intervals were drawn) and, per method,
    ``risk_coverage`` (:func:`risk_coverage_mean`).

    Also per method, where every run has them: the :data:`SELECTIVE_METRICS` in ``test``;
    ``calibrated`` (the "+TS" evaluation: :func:`calibrated_summary`); ``shift_by_kind``
    (``{severity: {kind: {metric: {"mean", "std"}}}}``, every corrupted set). With ``cost``
    (of :func:`ensemblekit.experiments.benchmark.measure_benchmark_costs`): ``results["cost"]``
    as measured and each method's ``cost`` entry (Masksembles also ``cost_tiled``).
    """
    methods = list(dict.fromkeys(method for method, _ in records))
    seeds = sorted({seed for _, seed in records})
    ood_records = [r for r in records.values() if "ood" in r]
    results = {
        "dataset": settings.dataset,
        "seeds": seeds,
        "protocol": protocol(settings, records),
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
                key: mean_std([_mean([r["shift_mean"][s][key] for s in severities])
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
            if f"{method}_tiled" in cost["models"]:
                entry["cost_tiled"] = cost["models"][f"{method}_tiled"]
        entry["train_seconds"] = _mean([r["train"]["seconds"] for r in runs])
        entry["train"] = {key: mean_std([r["train"][key] for r in runs])
                          for key in ("loss", "accuracy", "epochs")}
        if all(r.get("validation") for r in runs):
            entry["validation"] = {key: mean_std([r["validation"][key] for r in runs])
                                   for key in VALIDATION_METRICS}
        results["methods"][method] = entry
    if predictions is not None:
        from .experiments.verdicts import DEFAULT_N_BOOT

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
        "temperature": mean_std([_mean(f["temperatures"]) for f in fits]),
        "validation_nll": {side: mean_std([f["validation_nll"][side] for f in fits])
                           for side in ("before", "after")},
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
        rows.append({"seed": record["seed"], "temperature": _mean(fit["temperatures"]),
                     "validation_nll_before": fit["validation_nll"]["before"],
                     "validation_nll_after": fit["validation_nll"]["after"],
                     "validation_errors": errors, "test_nll_raw": record["test"]["nll"],
                     "test_nll_ts": record["calibrated"]["test"]["nll"]})
    return rows


def risk_coverage_mean(runs: list[dict], points: int = RISK_COVERAGE_POINTS) -> dict:
    """The risk-coverage curve of the mean prediction on the clean test set, averaged over
    runs: ``{"coverage": [c_1..c_P], "risk": [mean over runs]}`` at coverage ``c_j = j / P``.

    ``runs``: per-example predictions (``"labels"`` (N,), ``"test_probs"`` (N, K)); confidence
    is the top mean probability. Each run's curve
    (:func:`ensemblekit.metrics.risk_coverage_curve`) is read at the first threshold whose
    coverage reaches ``c_j`` (the curve is a step function; ties enter together).
    """
    from .metrics.selective import risk_coverage_curve

    grid = torch.arange(1, points + 1, dtype=torch.float64) / points
    curves = []
    for run in runs:
        confidence, predicted = run["test_probs"].max(dim=-1)
        coverage, risk, _ = risk_coverage_curve(confidence, predicted == run["labels"])
        index = torch.searchsorted(coverage, grid - 1e-12).clamp(max=len(coverage) - 1)
        curves.append(risk[index])
    return {"coverage": grid.tolist(), "risk": torch.stack(curves).mean(0).tolist()}


def protocol(settings, records: dict) -> dict:
    """What was run, for the report and for anyone reading ``results.json`` later."""
    first = next(iter(records.values()))
    train = settings.train_config(seed=0).to_dict()
    for key in ("seed", "progress", "device", "dataset", "num_workers", "compile"):
        train.pop(key, None)
    return {
        "dataset": settings.dataset,
        "backbone": settings.backbone,
        "width": settings.width,
        "hidden": settings.hidden,
        "members": settings.members,
        "masksembles_scale": settings.scale,
        "mc_dropout_p": settings.dropout,
        "mc_samples": settings.mc_samples or settings.members,
        "train": train,
        "corruptions": list(settings.corruptions),
        "severities": list(settings.severities),
        "ood": first["ood_name"],
        "ood_status": first["ood_status"],
        "ece_bins": 15,
        "aggregation": "softmax per member, then the mean over members",
        "std": "sample standard deviation over seeds (n - 1; 0 for one seed)",
        "validation_fraction": getattr(settings, "validation_fraction", None),
        "method_settings": {method: settings.method_settings(method)
                            for method in dict.fromkeys(m for m, _ in records)},
        "tuned": tuned_source(settings),
    }


def tuned_source(settings) -> str | None:
    """The recipe's ``"tuned"`` sentence (which config file and ``ensemblekit tune`` command
    chose its per-method settings on the validation split) when the settings run with the
    recipe's ``method_options`` unchanged; None otherwise (options set by a config or flags,
    or a recipe without tuned options)."""
    from .experiments.recipes import recipe_for

    recipe = recipe_for(settings.dataset)
    tuned, chosen = recipe.get("tuned"), recipe.get("method_options")
    if not tuned or not chosen or settings.backbone != recipe.get("backbone"):
        return None
    in_use = settings.method_options
    if any(in_use.get(method, {}).get(key) != value
           for method, table in chosen.items() for key, value in table.items()):
        return None
    return tuned


def write_reports(out: str | Path, results: dict, records: dict) -> None:
    """Write ``results.json``, ``results.csv`` and ``report.md`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.csv", results_csv(results))
    atomic_write_text(out / "report.md", markdown(results))


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
                           (f"{method}_tiled", entry.get("cost_tiled"))):
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


def summary_table(results: dict) -> str:
    """The plain-text table the CLI prints: one row per method, mean ± std over seeds (the
    value alone for one seed), with "+TS" NLL/ECE and the latency ratio when measured."""
    pm = _formatter(results)
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


#: What each claim is tested on, with its label in the report.
CLAIM_METRICS = ("accuracy", "nll", "ece", "shift_ece", "auroc")
CLAIM_METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "ece": "ECE",
                        "shift_ece": "shift ECE", "auroc": "OOD AUROC"}
#: The OOD score whose AUROC the claims use.
CLAIM_OOD_SCORE = "entropy"


#: the methods Masksembles is placed against, metric by metric, in :func:`orderings` (the
#: "between" claim already places it against the single model and Deep Ensembles)
POSITION_REFERENCES = ("mc_dropout", "batchensemble")


def orderings(predictions: dict, *, n_boot: int | None = None, seed: int = BOOTSTRAP_SEED,
              level: float = 0.95) -> list[dict]:
    """The orderings the papers report, each tested by a paired bootstrap over seeds and test
    examples (:mod:`ensemblekit.experiments.verdicts`) on every metric it speaks of.

    ``predictions``: ``{(method, seed): predictions}`` as saved by the benchmark
    (:func:`~ensemblekit.experiments.pipeline.evaluate_run`); methods are compared on the seeds
    they all ran. Metrics (where present in every run): clean ``accuracy``, ``nll``, ``ece``;
    ``shift_ece`` (mean ECE over every corruption kind and severity); ``auroc`` (OOD, entropy of
    the mean prediction). Each claim: ``{"claim", "verdict", "comparisons": [...]}``, its
    verdict the conjunction of its comparisons' (:func:`~ensemblekit.experiments.verdicts.
    combine`); a comparison: ``{"metric", "statement", "values": {method: mean over seeds},
    "difference": {"estimate", "low", "high", "level", "n_boot"}, "claimed": "positive" |
    "negative", "verdict"}``. Claims whose methods did not all run are left out.
    """
    from .experiments import verdicts

    table = _BootstrapTable(predictions, n_boot=n_boot or verdicts.DEFAULT_N_BOOT, seed=seed,
                            level=level)
    have = table.have
    claims = []
    if have("deep_ensemble", "single"):
        claims.append(table.claim(
            "Deep Ensembles are better calibrated than the single model",
            [("deep_ensemble", "single", m) for m in ("ece", "shift_ece")]))
    if have("deep_ensemble", "single", "masksembles"):
        claims.append(table.claim(
            "Masksembles lies between the single model and Deep Ensembles (single model worse "
            "than Masksembles, Masksembles worse than Deep Ensembles)",
            [pair for m in CLAIM_METRICS
             for pair in (("masksembles", "single", m), ("deep_ensemble", "masksembles", m))]))
    if have("batchensemble", "single", "deep_ensemble"):
        claims.append(table.closer_claim(
            "BatchEnsemble stays close to the single model (closer to it than to Deep "
            "Ensembles)", "batchensemble", "single", "deep_ensemble"))
    if have("deep_ensemble", "mc_dropout"):
        claims.append(table.claim(
            "Deep Ensembles are better calibrated than MC-Dropout",
            [("deep_ensemble", "mc_dropout", m) for m in ("ece", "shift_ece")]))
    if have("deep_ensemble", "single"):
        claims.append(table.claim(
            "Deep Ensembles detect OOD inputs better than the single model",
            [("deep_ensemble", "single", "auroc")]))
    # Where Masksembles lands against each other method, metric by metric: "holds" there means
    # Masksembles is better, "does not hold" that it is worse, "inconclusive" that the
    # intervals cannot tell them apart.
    for other in POSITION_REFERENCES:
        if have("masksembles", other):
            claims.append(table.claim(
                f"Masksembles is better than {METHOD_LABELS.get(other, other)} (where it lands: "
                "holds = better, does not hold = worse)",
                [("masksembles", other, m) for m in CLAIM_METRICS]))
    return [claim for claim in claims if claim["comparisons"]]


class _BootstrapTable:
    """Each (method, metric)'s mean over seeds and bootstrap replicates, computed once on
    draws shared by every method (clean and shift metrics: one set of draws over the test
    examples; AUROC: one over in- and out-of-distribution examples, resampled separately)."""

    def __init__(self, predictions: dict, *, n_boot: int, seed: int, level: float):
        from .experiments import verdicts

        self.verdicts, self.level = verdicts, level
        methods = list(dict.fromkeys(method for method, _ in predictions))
        seeds = sorted({s for _, s in predictions})
        self.runs = {m: [predictions[(m, s)] for s in seeds] for m in methods
                     if all((m, s) in predictions for s in seeds)}
        self.cache: dict = {}
        self.data = {}  # metric -> (Metric, labels, resamples, {method: [values per seed]})
        if not self.runs:
            return
        first = next(iter(self.runs.values()))[0]
        labels = first["labels"]
        clean = verdicts.draw_resamples(len(labels), len(seeds), n_boot=n_boot, seed=seed)
        for name, metric in (("accuracy", verdicts.ACCURACY), ("nll", verdicts.NLL),
                             ("ece", verdicts.ECE)):
            self.data[name] = (metric, labels, clean,
                               {m: [p["test_probs"] for p in runs]
                                for m, runs in self.runs.items()})
        if all("shift" in p for runs in self.runs.values() for p in runs):
            self.data["shift_ece"] = (verdicts.SHIFT_ECE, labels, clean, {
                m: [(p["shift"]["confidence"].flatten(0, 1).T,
                     p["shift"]["correct"].flatten(0, 1).T) for p in runs]
                for m, runs in self.runs.items()})
        if all(CLAIM_OOD_SCORE in p.get("ood_scores", {}) for runs in self.runs.values()
               for p in runs):
            scores = first["ood_scores"][CLAIM_OOD_SCORE]
            is_ood = torch.cat([torch.zeros(len(scores["in"]), dtype=torch.bool),
                                torch.ones(len(scores["out"]), dtype=torch.bool)])
            draws = verdicts.draw_resamples(len(is_ood), len(seeds), n_boot=n_boot, seed=seed,
                                            strata=is_ood)
            self.data["auroc"] = (verdicts.AUROC, is_ood, draws, {
                m: [torch.cat([p["ood_scores"][CLAIM_OOD_SCORE]["in"],
                               p["ood_scores"][CLAIM_OOD_SCORE]["out"]]) for p in runs]
                for m, runs in self.runs.items()})

    def have(self, *methods: str) -> bool:
        return all(method in self.runs for method in methods)

    def value(self, method: str, name: str):
        """(mean over seeds, replicates (B,)) of ``method`` on metric ``name``."""
        if (method, name) not in self.cache:
            metric, labels, resamples, values = self.data[name]
            self.cache[(method, name)] = (
                self.verdicts.observed(metric, values[method], labels),
                self.verdicts.replicates(metric, values[method], labels, resamples))
        return self.cache[(method, name)]

    def claim(self, text: str, pairs) -> dict:
        """``better`` better than ``worse`` on each ``(better, worse, metric)`` present."""
        comparisons = []
        for better, worse, name in pairs:
            if name not in self.data:
                continue
            (a, a_reps), (b, b_reps) = self.value(better, name), self.value(worse, name)
            result = self.verdicts.compare_replicates(
                self.data[name][0], names=(better, worse), observed_values=(a, b),
                replicate_values=(a_reps, b_reps), level=self.level)
            comparisons.append({
                "metric": name,
                "statement": f"{METHOD_LABELS.get(better, better)} better than "
                             f"{METHOD_LABELS.get(worse, worse)}",
                "values": {better: a, worse: b},
                "difference": result.difference.to_dict(),
                "claimed": "positive" if self.data[name][0].higher_is_better else "negative",
                "verdict": result.verdict,
            })
        return self._finish(text, comparisons)

    def closer_claim(self, text: str, method: str, near: str, far: str) -> dict:
        """``|method - near| - |method - far| < 0`` on every metric present."""
        comparisons = []
        for name in CLAIM_METRICS:
            if name not in self.data:
                continue
            (m, m_reps), (n, n_reps), (f, f_reps) = (self.value(x, name)
                                                     for x in (method, near, far))
            difference = self.verdicts.closeness((m, n, f), (m_reps, n_reps, f_reps),
                                                 level=self.level)
            comparisons.append({
                "metric": name,
                "statement": f"|{METHOD_LABELS[method]} - {METHOD_LABELS[near]}| - "
                             f"|{METHOD_LABELS[method]} - {METHOD_LABELS[far]}|",
                "values": {method: m, near: n, far: f},
                "difference": difference.to_dict(),
                "claimed": "negative",
                "verdict": self.verdicts.verdict(difference, claimed="negative"),
            })
        return self._finish(text, comparisons)

    def _finish(self, text: str, comparisons: list[dict]) -> dict:
        verdict = (self.verdicts.combine([c["verdict"] for c in comparisons]) if comparisons
                   else None)
        return {"claim": text, "verdict": verdict, "comparisons": comparisons}


def markdown(results: dict) -> str:
    """The human-readable report: protocol, method settings, tables (clean with "+TS" rows and
    selective prediction, temperature scaling, cost, shift by severity and by kind, OOD), the
    papers' orderings, figures."""
    p = results["protocol"]
    methods = results["methods"]
    seeds = results["seeds"]
    pm = _formatter(results)
    train = p["train"]
    lines = [f"# Uncertainty benchmark on {p['dataset']}", "", "## Protocol", ""]
    backbone = p["backbone"] + (f" (width x{p['width']:g})" if p["width"] else "")
    if p["hidden"]:
        backbone += f", hidden layers {'-'.join(map(str, p['hidden']))}"
    schedule = train["schedule"]
    if schedule == "multistep":
        schedule += f" (x{train['gamma']:g} at epochs {', '.join(map(str, train['milestones']))})"
    if train.get("warmup_epochs"):
        schedule = f"{train['warmup_epochs']:g}-epoch warm-up then {schedule}"
    # Mixed precision is a CUDA-only setting: on the CPU every run is fp32.
    precision = "fp32 precision" if train["precision"] == "fp32" else (
        f"{train['precision']} precision on GPU (fp32 on CPU)")
    optimizer = f"{train['optimizer']} lr {train['lr']:g}, weight decay {train['weight_decay']:g}"
    if train["optimizer"] == "sgd":
        optimizer += f", momentum {train['momentum']:g}" + (
            " (Nesterov)" if train["nesterov"] else "")
    spread = ("one seed: every number is that run's value" if len(seeds) == 1
              else f"every number is the mean ± {p['std']}")
    lines += [
        f"- Methods: {', '.join(METHOD_LABELS.get(m, m) for m in methods)}; backbone {backbone}.",
        f"- Members: {p['members']} (Masksembles scale {p['masksembles_scale']:g}; MC-Dropout "
        f"p = {p['mc_dropout_p']:g} with {p['mc_samples']} stochastic passes), unless a "
        "method's own setting below says otherwise.",
        f"- Training: {_plural(train['epochs'], 'epoch')}, batch {train['batch_size']}, "
        f"{optimizer}, "
        f"{schedule} schedule, {precision}.",
        f"- Seeds: {', '.join(map(str, seeds))}; {spread}.",
        f"- Predictions: {p['aggregation']}; ECE with {p['ece_bins']} equal-width bins on the "
        "top-label confidence.",
    ]
    if p.get("validation_fraction"):
        lines.append(f"- Validation: {p['validation_fraction']:.0%} of the training split held "
                     "out (stratified, fixed split seed: the same images for every method and "
                     "seed); training uses the rest; the test set chooses nothing.")
    elif "validation_fraction" in p:
        lines.append("- Validation: none (validation_fraction 0); training uses the whole "
                     "training split.")
    if p["corruptions"]:
        lines.append(
            f"- Shift: {len(p['corruptions'])} corruption kinds ({', '.join(p['corruptions'])}) "
            f"at severities {', '.join(map(str, p['severities']))}, each applied to the whole "
            "test set (the same corrupted images for every method and seed); per severity the "
            "metrics are averaged over the kinds.")
    else:
        lines.append("- Shift: not evaluated (no corruptions).")
    if p["ood_status"] == "ok":
        lines.append(f"- OOD: {p['ood']} test set against the clean test set; OOD is the "
                     "positive class; scores msp = 1 - max mean probability, entropy of the "
                     "mean prediction, mutual information, variation ratio (n/a for one "
                     "member), max_logit = -max of the mean logits, energy = -logsumexp of "
                     "the mean logits, energy_members = mean member energy.")
    elif p["ood_status"] == "off":
        lines.append("- OOD: not evaluated (--ood none).")
    else:
        lines.append(f"- OOD: not evaluated: the set {p['ood']!r} is {p['ood_status']}.")
    lines += ["", *method_settings_lines(results)]

    has_selective = all(key in entry["test"] for entry in methods.values()
                        for key in SELECTIVE_METRICS)
    selective = SELECTIVE_METRICS if has_selective else ()
    header = ["method", "accuracy", "NLL", "Brier", "ECE",
              *(_METRIC_LABELS[key] for key in selective), "train s"]
    lines += ["", "## Clean test set", ""]
    if any("calibrated" in entry for entry in methods.values()):
        lines += ["Each method raw and \"+TS\": the same trained models with a temperature "
                  "fitted on the validation split (see *Temperature scaling* below)."
                  + (" Selective prediction: confidence = the top mean probability; AURC = "
                     "area under the risk-coverage curve, E-AURC = its excess over an oracle "
                     "ranking, AUGRC = area under the generalized risk (risk x coverage), "
                     "risk @ 90% coverage = error rate on the 90% most confident inputs; "
                     "lower is better." if selective else ""), ""]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, entry in methods.items():
        t = entry["test"]
        cells = [pm(t[key]) for key in ("accuracy", "nll", "brier", "ece", *selective)]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells)
                     + f" | {entry['train_seconds']:.1f} |")
        calibrated = entry.get("calibrated")
        if calibrated:
            c = calibrated["test"]
            cells = [pm(c[key]) if key in c else "n/a"
                     for key in ("accuracy", "nll", "brier", "ece", *selective)]
            # the same trained model: no training of its own
            lines.append(f"| {METHOD_LABELS.get(method, method)} +TS | " + " | ".join(cells)
                         + " | as raw |")
    lines += ["", *temperature_lines(results)]
    lines += ["", *training_fit_table(results)]
    lines += ["", *cost_lines(results)]

    if all("shift" in entry for entry in methods.values()):
        severities = list(next(iter(methods.values()))["shift"])
        lines += ["", "## Under shift", ""]
        for metric in ("accuracy", "ece", "nll", "brier"):
            lines += [f"### {_METRIC_LABELS[metric]} by severity", "",
                      "| method | clean | " + " | ".join(severities) + " | mean |",
                      "|---|" + "---:|" * (len(severities) + 2)]
            for method, entry in methods.items():
                cells = [pm(entry["test"][metric])]
                cells += [pm(entry["shift"][s][metric]) for s in severities]
                cells.append(pm(entry["shift_overall"][metric]))
                lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells)
                             + " |")
            lines.append("")
        lines += per_kind_lines(results)

    if all("ood" in entry for entry in methods.values()):
        lines += ood_lines(results)

    lines += ["## Do the papers' orderings hold here?", "", *verdict_lines(results),
              "", "## Figures", ""]
    drawn = benchmark_figure_names(results)
    for name, caption in _FIGURES:
        if name in drawn:
            lines.append(f"- {caption}: ![{caption}](figures/{name})")
    return "\n".join(lines) + "\n"


def method_settings_lines(results: dict) -> list[str]:
    """Markdown lines: each method's setting (its resolved build options, epochs, drop
    fraction and member width at a drop site, parameters) and where the settings came from."""
    p = results["protocol"]
    settings = p.get("method_settings")
    if not settings:
        return []
    lines = ["### Method settings", ""]
    tuned = p.get("tuned")
    if tuned:
        lines += [f"Each method's setting was chosen on the validation split (never the test "
                  f"set) by `ensemblekit tune`: {tuned}", ""]
    else:
        lines += ["Each method's setting as configured (the config, the flags and the "
                  "dataset's recipe); not chosen by a tune run recorded in the recipe.", ""]
    lines += ["| method | options | epochs | drop fraction | member width | params |",
              "|---|---|---:|---:|---:|---:|"]
    for method, entry in results["methods"].items():
        own = settings.get(method)
        if own is None:
            continue
        options = ", ".join(f"{key}={_option(value)}" for key, value in own.items()
                            if key not in ("epochs", "drop_fraction", "member_width"))
        lines.append(f"| {METHOD_LABELS.get(method, method)} | {options or '-'} | "
                     f"{own['epochs']} | {own['drop_fraction']:.3f} | "
                     f"{own['member_width']:.3f} | {entry['params']:,} |")
    lines += ["", "Drop fraction: the share of a drop site's channels one member does not see "
              "(Masksembles 1 - keep fraction, MC-Dropout p); member width: a member's "
              "channels at a drop site over the single model's (1 with widen)."]
    return lines


def _option(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def temperature_lines(results: dict) -> list[str]:
    """Markdown lines of the "+TS" fits: temperature, validation NLL before and after, test NLL
    and ECE raw and scaled, and a sentence for every method whose test NLL scaling worsened."""
    methods = {m: e for m, e in results["methods"].items() if e.get("calibrated")}
    if not methods:
        return []
    pm = _formatter(results)
    first = next(iter(methods.values()))["calibrated"]
    lines = ["### Temperature scaling (+TS)", "",
             f"One temperature T per run ({first['mode']} mode: on the log of the mean member "
             f"probability), fitted to minimise the NLL on the validation split "
             f"({first['n_validation']} images, held out of training), never on the test set; "
             "T = 1 is among the candidates, so the validation NLL cannot rise.", "",
             "| method | T | validation NLL before | after | test NLL raw | +TS | test ECE raw "
             "| +TS |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rose = []
    for method, entry in methods.items():
        c = entry["calibrated"]
        before, after = c["validation_nll"]["before"], c["validation_nll"]["after"]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | {pm(c['temperature'])} | "
                     f"{pm(before)} | {pm(after)} | {pm(entry['test']['nll'])} | "
                     f"{pm(c['test']['nll'])} | {pm(entry['test']['ece'])} | "
                     f"{pm(c['test']['ece'])} |")
        if not c["validation_nll_fell"]:
            rose.append(METHOD_LABELS.get(method, method))
    lines.append("")
    if rose:
        lines.append(f"**Validation NLL rose after scaling for {', '.join(rose)}: the fit did "
                     "not reach its minimum (a bug; these +TS rows are not to be trusted).**")
    else:
        lines.append("Validation NLL after scaling <= before for every method and seed.")
    for method, entry in methods.items():
        lines += _worse_lines(METHOD_LABELS.get(method, method), entry)
    return lines


def _worse_lines(name: str, entry: dict) -> list[str]:
    """A sentence for a method whose test NLL +TS made worse (on average, or in some runs),
    naming the runs, their temperature and the validation errors the fit saw."""
    c = entry["calibrated"]
    runs = [r for r in c.get("runs", []) if r["test_nll_ts"] > r["test_nll_raw"]]
    mean_worse = c["test"]["nll"]["mean"] > entry["test"]["nll"]["mean"]
    if not runs and not mean_worse:
        return []
    parts = []
    if mean_worse:
        parts.append(f"on average ({entry['test']['nll']['mean']:.4f} -> "
                     f"{c['test']['nll']['mean']:.4f}, while the validation NLL fell "
                     f"{c['validation_nll']['before']['mean']:.4f} -> "
                     f"{c['validation_nll']['after']['mean']:.4f})")
    if runs:
        parts.append("in " + "; ".join(
            f"seed {r['seed']} ({r['test_nll_raw']:.4f} -> {r['test_nll_ts']:.4f}, T = "
            f"{r['temperature']:.3f}, validation NLL {r['validation_nll_before']:.4f} -> "
            f"{r['validation_nll_after']:.4f}"
            + (f", {r['validation_errors']} validation errors" if r["validation_errors"]
               is not None else "") + ")" for r in runs))
    text = f"- {name}: +TS makes the test NLL worse " + ", and ".join(parts) + "."
    if any(r["temperature"] < 1 for r in runs) or (
            not runs and c["temperature"]["mean"] < 1):
        text += (f" A T below 1 sharpens the prediction: with only a handful of errors among "
                 f"{c['n_validation']} validation images little argues against confidence, so "
                 "the fit sharpens, and the test errors, made more confident, cost more NLL "
                 "than the sharper correct predictions save.")
    return [text]


def cost_lines(results: dict) -> list[str]:
    """Markdown lines of the cost table: parameters, FLOPs per sample and latency, each as a
    ratio to the single model, all measured in one process after training."""
    cost = results.get("cost")
    if not cost:
        return []
    protocol = cost["protocol"]
    lines = ["### Inference cost", "",
             f"Measured once, after training, in one process: every method freshly built "
             f"(cost does not depend on the weights), batch {protocol['batch']} on "
             f"{protocol['device']} with {protocol['threads']} thread(s), warm-up calls, then "
             f"{protocol['rounds']} rounds visiting every model in turn with enough calls for "
             f"at least {protocol['min_seconds']:g} s of timed work per model; latency = "
             "median over rounds of the mean call time. Ratios divide by the single model "
             "measured in the same rounds; \"latency x\" is like for like (compiled "
             "Masksembles over the single network compiled the same way), \"x single\" over "
             "the plain single model. FLOPs: torch's FlopCounterMode on the inference path "
             "(2 per multiply-add).", "",
             "| method | inference | params | x | FLOPs / sample | x | ms / sample | "
             "latency x | x single |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, entry in results["methods"].items():
        for name, c in ((method, entry.get("cost")), (f"{method} tiled", entry.get("cost_tiled"))):
            if not c:
                continue
            label = METHOD_LABELS.get(method, method) + (" (tiled)" if name.endswith(" tiled")
                                                         else "")
            lines.append(f"| {label} | {c['inference']} | {c['params']:,} | "
                         f"{c['params_ratio']:.2f} | {c['inference_flops_per_sample']:,.0f} | "
                         f"{c['inference_flops_ratio']:.2f} | {c['latency_ms_per_sample']:.4f} | "
                         f"{c['latency_ratio']:.2f} | {c['latency_ratio_to_single']:.2f} |")
    return lines


def per_kind_lines(results: dict) -> list[str]:
    """Markdown lines: accuracy, ECE and Brier per corruption kind at the highest severity (5
    by default), one row per kind, one column per method."""
    methods = results["methods"]
    if not all(entry.get("shift_by_kind") for entry in methods.values()):
        return []
    pm = _formatter(results)
    severity = max(next(iter(methods.values()))["shift_by_kind"], key=int)
    kinds = list(next(iter(methods.values()))["shift_by_kind"][severity])
    names = [METHOD_LABELS.get(m, m) for m in methods]
    lines = [f"### Per corruption kind at severity {severity}", "",
             "Every (kind, severity) cell is in results.json (shift_by_kind) and results.csv "
             "(section shift_kind).", ""]
    for metric in ("accuracy", "ece", "brier"):
        lines += [f"**{_METRIC_LABELS[metric]}**", "", "| kind | " + " | ".join(names) + " |",
                  "|---|" + "---:|" * len(names)]
        for kind in kinds:
            cells = [pm(entry["shift_by_kind"][severity][kind][metric])
                     for entry in methods.values()]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def ood_lines(results: dict) -> list[str]:
    """Markdown lines: AUROC of every OOD score (one column each; "n/a" where undefined),
    the "+TS" AUROC of the entropy, and AUPR / FPR@95%TPR per score."""
    p = results["protocol"]
    methods = results["methods"]
    pm = _formatter(results)
    scores = [s for s in OOD_SCORES if any(s in e["ood"] for e in methods.values())]
    scores += [s for e in methods.values() for s in e["ood"] if s not in scores]
    scores = list(dict.fromkeys(scores))
    with_ts = all("ood" in (e.get("calibrated") or {}) for e in methods.values())
    header = ["method", *scores] + (["entropy +TS"] if with_ts else [])
    lines = [f"## Out-of-distribution detection ({p['ood']})", "",
             "AUROC per score (higher = better; 0.5 = chance); n/a: the score is undefined for "
             "the method (members disagree by construction only with several members).", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for method, entry in methods.items():
        cells = [pm(entry["ood"][s]["auroc"]) if s in entry["ood"] else "n/a" for s in scores]
        if with_ts:
            cells.append(pm(entry["calibrated"]["ood"]["entropy"]["auroc"]))
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    lines += ["", "| method | score | AUROC | AUPR | FPR@95%TPR |", "|---|---|---:|---:|---:|"]
    for method, entry in methods.items():
        for score, values in entry["ood"].items():
            lines.append(f"| {METHOD_LABELS.get(method, method)} | {score} | "
                         f"{pm(values['auroc'])} | {pm(values['aupr'])} | "
                         f"{pm(values['fpr95'])} |")
    lines.append("")
    return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pm(value: dict, *, alone: bool = False) -> str:
    """``mean ± std`` with digits that suit the magnitude; the mean alone with ``alone`` (one
    seed: a std of 0 says nothing); "n/a" for an undefined metric."""
    mean, std = value["mean"], value["std"]
    if mean is None:
        return "n/a"
    digits = 4 if abs(mean) < 1 else 3
    if alone or std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _formatter(results: dict):
    """:func:`_pm` for these results: the value alone when they hold one seed."""
    alone = len(results["seeds"]) == 1
    return lambda value: _pm(value, alone=alone)


def training_fit_table(results: dict) -> list[str]:
    """Markdown lines: per method the last epoch's training loss and accuracy, the validation
    NLL and accuracy, beside the test ones (mean ± std over seeds)."""
    methods = results["methods"]
    pm = _formatter(results)
    with_validation = all("validation" in entry for entry in methods.values())
    header = "| method | epochs | train loss | train accuracy |"
    rule = "|---|---:|---:|---:|"
    if with_validation:
        header += " validation NLL | validation accuracy |"
        rule += "---:|---:|"
    lines = ["### Training fit", "",
             "Training loss and accuracy: means over the last epoch's batches, in training mode "
             "(augmentation and drop sites active)"
             + ("; validation: the ensemble prediction on the held-out validation split."
                if with_validation else "; no validation split (validation_fraction 0)."),
             "", header + " test NLL | test accuracy |", rule + "---:|---:|"]
    for method, entry in methods.items():
        fit = entry.get("train")
        if fit is None:  # results written before training fit was recorded
            continue
        cells = [f"{fit['epochs']['mean']:g}", pm(fit["loss"]), pm(fit["accuracy"])]
        if with_validation:
            cells += [pm(entry["validation"]["nll"]), pm(entry["validation"]["accuracy"])]
        cells += [pm(entry["test"]["nll"]), pm(entry["test"]["accuracy"])]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


def verdict_lines(results: dict) -> list[str]:
    """Markdown lines of ``results["orderings"]``: per claim its verdict and a table of its
    comparisons, each difference with its bootstrap interval."""
    claims = results.get("orderings") or []
    if not claims:
        return ["Not checked: these need the single model, Deep Ensembles and the method in "
                "question in the same run, with their per-example predictions."]
    boot = results["bootstrap"]
    lines = [f"Each verdict comes from a paired bootstrap ({boot['n_boot']} replicates, seed "
             f"{boot['seed']}): {boot['resampled']}; every metric is recomputed on each "
             "replicate (ECE and AUROC on the resampled set) and averaged over the drawn "
             f"seeds. Intervals: {boot['level']:.0%} percentile intervals of the difference. "
             "**holds**: the interval lies entirely on the claimed side of 0; **does not "
             "hold**: entirely on the other side; **inconclusive**: it contains 0. A claim made "
             "of several comparisons holds only if every one holds. Shift ECE: the mean ECE over "
             "every corruption kind and severity; OOD AUROC: entropy of the mean prediction.",
             ""]
    for claim in claims:
        lines += [f"**{claim['claim']}: {claim['verdict']}.**", "",
                  "| metric | claim | values | difference [95% interval] | verdict |",
                  "|---|---|---|---|---|"]
        for c in claim["comparisons"]:
            values = " vs ".join(f"{METHOD_LABELS.get(m, m)} {v:.4f}"
                                 for m, v in c["values"].items())
            d = c["difference"]
            side = "< 0" if c["claimed"] == "negative" else "> 0"
            statement = c["statement"].replace("|", "\\|")  # a bare | would end the cell
            lines.append(f"| {CLAIM_METRIC_LABELS[c['metric']]} | {statement} "
                         f"(difference {side}) | {values} | {d['estimate']:+.4f} "
                         f"[{d['low']:+.4f}, {d['high']:+.4f}] | {c['verdict']} |")
        lines.append("")
    return lines[:-1]


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values))

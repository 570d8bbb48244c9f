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
#: The ensemble prediction's metrics on the validation split (as in the run records).
VALIDATION_METRICS = ("accuracy", "nll", "brier", "ece")
#: The seed of the bootstrap draws behind the verdicts (fixed: the same report twice).
BOOTSTRAP_SEED = 0
SHIFT_METRICS = ("accuracy", "nll", "brier", "ece")
OOD_METRICS = ("auroc", "aupr", "fpr95")

METHOD_LABELS = {
    "single": "Single model",
    "mc_dropout": "MC-Dropout",
    "masksembles": "Masksembles",
    "batchensemble": "BatchEnsemble",
    "deep_ensemble": "Deep Ensemble",
}
_METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "brier": "Brier", "ece": "ECE",
                  "adaptive_ece": "adaptive ECE", "mce": "MCE", "auroc": "AUROC",
                  "aupr": "AUPR", "fpr95": "FPR@95%TPR"}
_FIGURES = (
    ("ece_vs_severity.png", "ECE against corruption severity (mean ± std over seeds)"),
    ("reliability.png", "Reliability diagrams on the clean test set (all seeds pooled)"),
    ("ood_histograms.png", "OOD scores, in- vs out-of-distribution (all seeds pooled)"),
    ("verdicts.png", "The orderings' differences with their 95% bootstrap intervals"),
)


def benchmark_figure_names(results: dict) -> list[str]:
    """The figures a benchmark's results allow: severity curves need shift metrics, the
    histograms OOD metrics for every method, the verdicts' intervals at least one checked
    ordering; the reliability diagrams always exist."""
    entries = results["methods"].values()
    needs = {"ece_vs_severity.png": "shift", "ood_histograms.png": "ood"}
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


def aggregate(records: dict, settings, predictions: dict | None = None) -> dict:
    """Results over seeds from ``{(method, seed): record}``: the ``results.json`` content.

    Per method: ``train`` (``loss``, ``accuracy`` of the last training epoch, ``epochs``) and,
    when every run has one, ``validation`` (:data:`VALIDATION_METRICS` of the ensemble
    prediction on the validation split), each ``{"mean", "std"}``. With ``predictions``
    (``{(method, seed): predictions}`` as saved by the benchmark) also ``orderings`` (see
    :func:`orderings`) and ``bootstrap`` (how the intervals were drawn).
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
            "test": {key: mean_std([r["test"][key] for r in runs]) for key in TEST_METRICS},
        }
        if all("shift_mean" in r for r in runs):
            severities = list(runs[0]["shift_mean"])
            entry["shift"] = {
                severity: {key: mean_std([r["shift_mean"][severity][key] for r in runs])
                           for key in SHIFT_METRICS}
                for severity in severities
            }
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
        entry["inference_ms_per_sample"] = _mean([r["inference_ms_per_sample"] for r in runs])
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
    return results


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
    }


def write_reports(out: str | Path, results: dict, records: dict) -> None:
    """Write ``results.json``, ``results.csv`` and ``report.md`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.csv", results_csv(results))
    atomic_write_text(out / "report.md", markdown(results))


def results_csv(results: dict) -> str:
    """One row per number: ``method,section,group,metric,mean,std`` (group: severity, score)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "section", "group", "metric", "mean", "std"])
    for method, entry in results["methods"].items():
        for metric, value in entry["test"].items():
            writer.writerow([method, "test", "", metric, value["mean"], value["std"]])
        for section in ("train", "validation"):
            for metric, value in entry.get(section, {}).items():
                writer.writerow([method, section, "", metric, value["mean"], value["std"]])
        for severity, metrics in entry.get("shift", {}).items():
            for metric, value in metrics.items():
                writer.writerow([method, "shift", severity, metric, value["mean"], value["std"]])
        for metric, value in entry.get("shift_overall", {}).items():
            writer.writerow([method, "shift", "mean", metric, value["mean"], value["std"]])
        for score, metrics in entry.get("ood", {}).items():
            for metric, value in metrics.items():
                writer.writerow([method, "ood", score, metric, value["mean"], value["std"]])
        writer.writerow([method, "cost", "", "inference_ms_per_sample",
                         entry["inference_ms_per_sample"], ""])
        writer.writerow([method, "cost", "", "params", entry["params"], ""])
    return buffer.getvalue()


def summary_table(results: dict) -> str:
    """The plain-text table the CLI prints: one row per method, mean ± std over seeds."""
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
    header += ["ms/sample"]
    rows = []
    for method, entry in results["methods"].items():
        test = entry["test"]
        row = [method, _pm(test["accuracy"]), _pm(test["nll"]), _pm(test["ece"])]
        if has_shift:
            overall = entry.get("shift_overall")
            row += [_pm(overall["accuracy"]), _pm(overall["ece"])] if overall else ["-", "-"]
        if has_ood:
            ood = entry.get("ood", {}).get("entropy")
            row += [_pm(ood["auroc"]) if ood else "-"]
        if has_fit:
            row += [_pm(entry["train"]["accuracy"])]
        row += [f"{entry['inference_ms_per_sample']:.4f}"]
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
    text = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    seeds = len(results["seeds"])
    text.append(f"(mean ± std over {seeds} seed{'s' if seeds > 1 else ''}"
                + (f"; {'; '.join(notes)}" if notes else "") + ")")
    return "\n".join(text)


#: What each claim is tested on, with its label in the report.
CLAIM_METRICS = ("accuracy", "nll", "ece", "shift_ece", "auroc")
CLAIM_METRIC_LABELS = {"accuracy": "accuracy", "nll": "NLL", "ece": "ECE",
                        "shift_ece": "shift ECE", "auroc": "OOD AUROC"}
#: The OOD score whose AUROC the claims use.
CLAIM_OOD_SCORE = "entropy"


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
    """The human-readable report: protocol, tables, the papers' orderings, figures."""
    p = results["protocol"]
    methods = results["methods"]
    seeds = results["seeds"]
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
    lines += [
        f"- Methods: {', '.join(METHOD_LABELS.get(m, m) for m in methods)}; backbone {backbone}.",
        f"- Members: {p['members']} (Masksembles scale {p['masksembles_scale']:g}; MC-Dropout "
        f"p = {p['mc_dropout_p']:g} with {p['mc_samples']} stochastic passes).",
        f"- Training: {_plural(train['epochs'], 'epoch')}, batch {train['batch_size']}, "
        f"{optimizer}, "
        f"{schedule} schedule, {precision}.",
        f"- Seeds: {', '.join(map(str, seeds))}. Every number is the mean ± {p['std']}.",
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

    lines += ["", "## Clean test set", "",
              "| method | params | accuracy | NLL | Brier | ECE | ms / sample | train s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, entry in methods.items():
        t = entry["test"]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | {entry['params']:,} | "
                     f"{_pm(t['accuracy'])} | {_pm(t['nll'])} | {_pm(t['brier'])} | "
                     f"{_pm(t['ece'])} | {entry['inference_ms_per_sample']:.4f} | "
                     f"{entry['train_seconds']:.1f} |")
    lines += ["", *training_fit_table(results)]

    if all("shift" in entry for entry in methods.values()):
        severities = list(next(iter(methods.values()))["shift"])
        lines += ["", "## Under shift", ""]
        for metric in ("ece", "accuracy", "nll"):
            lines += [f"### {_METRIC_LABELS[metric]} by severity", "",
                      "| method | clean | " + " | ".join(severities) + " | mean |",
                      "|---|" + "---:|" * (len(severities) + 2)]
            for method, entry in methods.items():
                cells = [_pm(entry["test"][metric])]
                cells += [_pm(entry["shift"][s][metric]) for s in severities]
                cells.append(_pm(entry["shift_overall"][metric]))
                lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells)
                             + " |")
            lines.append("")

    if all("ood" in entry for entry in methods.values()):
        lines += [f"## Out-of-distribution detection ({p['ood']})", "",
                  "| method | score | AUROC | AUPR | FPR@95%TPR |", "|---|---|---:|---:|---:|"]
        for method, entry in methods.items():
            for score, values in entry["ood"].items():
                lines.append(f"| {METHOD_LABELS.get(method, method)} | {score} | "
                             f"{_pm(values['auroc'])} | {_pm(values['aupr'])} | "
                             f"{_pm(values['fpr95'])} |")
        lines.append("")

    lines += ["## Do the papers' orderings hold here?", "", *verdict_lines(results),
              "", "## Figures", ""]
    drawn = benchmark_figure_names(results)
    for name, caption in _FIGURES:
        if name in drawn:
            lines.append(f"- {caption}: ![{caption}](figures/{name})")
    return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _pm(value: dict) -> str:
    """``mean ± std`` with digits that suit the magnitude; "n/a" for an undefined metric."""
    mean, std = value["mean"], value["std"]
    if mean is None:
        return "n/a"
    digits = 4 if abs(mean) < 1 else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def training_fit_table(results: dict) -> list[str]:
    """Markdown lines: per method the last epoch's training loss and accuracy, the validation
    NLL and accuracy, beside the test ones (mean ± std over seeds)."""
    methods = results["methods"]
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
        cells = [f"{fit['epochs']['mean']:g}", _pm(fit["loss"]), _pm(fit["accuracy"])]
        if with_validation:
            cells += [_pm(entry["validation"]["nll"]), _pm(entry["validation"]["accuracy"])]
        cells += [_pm(entry["test"]["nll"]), _pm(entry["test"]["accuracy"])]
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

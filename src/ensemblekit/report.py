"""Benchmark results over seeds: ``results.json``, ``results.csv``, ``report.md`` and a table.

Input: one record per (method, seed) run, as written by
:func:`ensemblekit.experiments.benchmark.run_one`. Output: every metric as
``{"mean", "std"}`` over seeds (``std`` is the sample standard deviation, n - 1 in the
denominator; 0 for a single seed). Shift metrics are first averaged over corruption kinds per
severity within each run, then over seeds. The report's verdicts on the papers' orderings are
computed from these numbers, never written in advance.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from .atomic import atomic_write_text

TEST_METRICS = ("accuracy", "nll", "brier", "ece", "adaptive_ece", "mce")
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
)


def benchmark_figure_names(results: dict) -> list[str]:
    """The figures a benchmark's results allow: severity curves need shift metrics and the
    histograms OOD metrics for every method; the reliability diagrams always exist."""
    entries = results["methods"].values()
    needs = {"ece_vs_severity.png": "shift", "ood_histograms.png": "ood"}
    return [name for name, _ in _FIGURES
            if name not in needs or all(needs[name] in entry for entry in entries)]


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


def aggregate(records: dict, settings) -> dict:
    """Results over seeds from ``{(method, seed): record}``: the ``results.json`` content."""
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
        results["methods"][method] = entry
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
    text = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    seeds = len(results["seeds"])
    text.append(f"(mean ± std over {seeds} seed{'s' if seeds > 1 else ''}"
                + (f"; {'; '.join(notes)}" if notes else "") + ")")
    return "\n".join(text)


def orderings(results: dict) -> list[dict]:
    """The orderings the papers report, checked on these results.

    Each item: ``{"claim", "holds"}`` (True, False, or None when it cannot be checked here)
    and ``"detail"``: the numbers behind the verdict. Calibration under shift is the ECE
    averaged over all corruption kinds and severities (each seed's mean, then over seeds).
    """
    methods = results["methods"]
    shifted = all("shift_overall" in entry for entry in methods.values())
    key, where = (("shift_overall", "under shift (mean ECE over all corruptions and "
                   "severities)") if shifted else ("test", "on the clean test set (no "
                                                   "corruptions were run)"))

    def ece(method):
        return methods[method][key]["ece"]

    def have(*names):
        return all(name in methods for name in names)

    checks = []
    if have("deep_ensemble", "single"):
        de, single = ece("deep_ensemble"), ece("single")
        detail = (f"Deep Ensemble {_pm(de)} vs single model {_pm(single)} {where}; "
                  f"{_margin(single, de)}")
        if shifted:
            lower = _count_lower(methods, "deep_ensemble", "single")
            detail += f"; lower at {lower} of {len(methods['single']['shift'])} severities"
        checks.append({"claim": "Deep Ensembles are better calibrated than the single model",
                       "holds": de["mean"] < single["mean"], "detail": detail})
    if have("deep_ensemble", "single", "masksembles"):
        de, single, masks = ece("deep_ensemble"), ece("single"), ece("masksembles")
        low, high = sorted([de["mean"], single["mean"]])
        holds = low <= masks["mean"] <= high
        position = ("between them" if holds else
                    "better than both" if masks["mean"] < low else "worse than both")
        accuracy_gap = (methods["masksembles"]["test"]["accuracy"]["mean"]
                        - methods["single"]["test"]["accuracy"]["mean"])
        checks.append({
            "claim": "Masksembles lies between the single model and Deep Ensembles",
            "holds": holds,
            "detail": f"Masksembles {_pm(masks)}: {position} (Deep Ensemble {_pm(de)}, single "
                      f"model {_pm(single)}) {where}; clean accuracy "
                      f"{accuracy_gap * 100:+.2f} points vs the single model",
        })
    if have("batchensemble", "single", "deep_ensemble"):
        be, single, de = ece("batchensemble"), ece("single"), ece("deep_ensemble")
        to_single = abs(be["mean"] - single["mean"])
        to_de = abs(be["mean"] - de["mean"])
        accuracy_gap = (methods["batchensemble"]["test"]["accuracy"]["mean"]
                        - methods["single"]["test"]["accuracy"]["mean"])
        detail = (f"BatchEnsemble {_pm(be)} {where}: {to_single:.4f} from the single model, "
                  f"{to_de:.4f} from Deep Ensembles")
        if abs(to_single - to_de) < be["std"]:
            detail += (f" (a tie: the two distances differ by less than BatchEnsemble's spread "
                       f"over seeds, {be['std']:.4f})")
        checks.append({
            "claim": "BatchEnsemble stays close to the single model (closer to it than to Deep "
                     "Ensembles)",
            "holds": to_single < to_de,
            "detail": f"{detail}; clean accuracy {accuracy_gap * 100:+.2f} points vs the single "
                      "model",
        })
    if have("deep_ensemble", "mc_dropout"):
        de, mc = ece("deep_ensemble"), ece("mc_dropout")
        checks.append({
            "claim": "Deep Ensembles are better calibrated than MC-Dropout",
            "holds": de["mean"] < mc["mean"],
            "detail": f"Deep Ensemble {_pm(de)} vs MC-Dropout {_pm(mc)} {where}; "
                      f"{_margin(mc, de)}",
        })
    if have("deep_ensemble", "single") and all("ood" in e for e in methods.values()):
        de = methods["deep_ensemble"]["ood"]["entropy"]["auroc"]
        single = methods["single"]["ood"]["entropy"]["auroc"]
        checks.append({
            "claim": "Deep Ensembles detect OOD inputs better than the single model",
            "holds": de["mean"] > single["mean"],
            "detail": f"AUROC (entropy of the mean prediction) {_pm(de)} vs {_pm(single)}; "
                      f"{_margin(de, single)}",
        })
    return checks


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

    lines += ["## Do the papers' orderings hold here?", ""]
    checks = orderings(results)
    if not checks:
        lines.append("Not checked: these need the single model, Deep Ensembles and the method "
                     "in question in the same run.")
    for check in checks:
        verdict = {True: "holds", False: "does not hold", None: "not checked"}[check["holds"]]
        lines.append(f"- {check['claim']}: **{verdict}**. {check['detail']}.")
    lines += ["", "## Figures", ""]
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


def _margin(worse: dict, better: dict) -> str:
    """How the gap between two means compares with the spread over seeds."""
    gap = worse["mean"] - better["mean"]
    spread = math.sqrt(worse["std"] ** 2 + better["std"] ** 2)
    if spread == 0:
        return f"gap {gap:+.4f} (one seed: no spread to compare with)"
    relation = "larger" if abs(gap) > spread else "smaller"
    return f"gap {gap:+.4f}, {relation} than the spread over seeds ({spread:.4f})"


def _count_lower(methods: dict, a: str, b: str) -> int:
    """At how many severities method ``a`` has a lower mean ECE than ``b``."""
    return sum(methods[a]["shift"][s]["ece"]["mean"] < methods[b]["shift"][s]["ece"]["mean"]
               for s in methods[b]["shift"])


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values))

"""The benchmark report's tables beside the clean one: each method's setting, temperature
scaling (+TS), training fit, inference cost, each corruption kind at the highest severity and
OOD detection. Each function takes the ``results.json`` content and returns markdown lines
(none when the results lack what the table shows).
"""

from __future__ import annotations

from .benchmark import METRIC_LABELS, OOD_SCORES, TILED_SUFFIX, formatter
from .labels import method_label


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
        lines.append(f"| {method_label(method)} | {options or '-'} | "
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
    pm = formatter(results)
    first = next(iter(methods.values()))["calibrated"]
    lines = ["### Temperature scaling (+TS)", "",
             f"One temperature T per run ({first['mode']} mode: on the log of the mean member "
             f"probability), fitted to minimise the NLL on the validation split "
             f"({first['n_validation']} images, held out of training), never on the test set; "
             "T = 1 is among the candidates, so the validation NLL cannot rise. A temperature "
             "the validation data do not identify (the minimiser at a search bound, fewer "
             "than 2 validation errors, or logits no better than chance) is not applied: the "
             "run keeps T = 1 (column fitted: runs with an identified T).", "",
             "| method | fitted | T | validation NLL before | after | test NLL raw | +TS | "
             "test ECE raw | +TS |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rose = []
    for method, entry in methods.items():
        c = entry["calibrated"]
        before, after = c["validation_nll"]["before"], c["validation_nll"]["after"]
        fitted = f"{c['fitted_runs']}/{len(c.get('runs', []))}" if "fitted_runs" in c else "-"
        lines.append(f"| {method_label(method)} | {fitted} | {pm(c['temperature'])} | "
                     f"{pm(before)} | {pm(after)} | {pm(entry['test']['nll'])} | "
                     f"{pm(c['test']['nll'])} | {pm(entry['test']['ece'])} | "
                     f"{pm(c['test']['ece'])} |")
        if not c["validation_nll_fell"]:
            rose.append(method_label(method))
    lines.append("")
    if rose:
        lines.append(f"**Validation NLL rose after scaling for {', '.join(rose)}: the fit did "
                     "not reach its minimum (a bug; these +TS rows are not to be trusted).**")
    else:
        lines.append("Validation NLL after scaling <= before for every method and seed.")
    unfitted = [f"{method_label(method)} seed {run['seed']} ({run['reason']})"
                for method, entry in methods.items()
                for run in entry["calibrated"].get("runs", []) if not run.get("fitted", True)]
    if unfitted:
        lines.append("Not fitted, T = 1: " + "; ".join(unfitted) + ".")
    for method, entry in methods.items():
        lines += _worse_lines(method_label(method), entry)
    return lines


def _worse_lines(name: str, entry: dict) -> list[str]:
    """A sentence for a method whose test NLL +TS made worse (on average, or in some runs),
    naming the runs, their temperature and the validation errors the fit saw."""
    c = entry["calibrated"]
    # An unfitted run keeps T = 1: its +TS NLL differs from the raw one by rounding only (the
    # scaled path recomputes the same probabilities), so it is never "made worse".
    runs = [r for r in c.get("runs", [])
            if r.get("fitted", True) and r["test_nll_ts"] > r["test_nll_raw"]]
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
        for name, c in ((method, entry.get("cost")),
                        (f"{method}{TILED_SUFFIX}", entry.get("cost_tiled"))):
            if not c:
                continue
            label = method_label(name)
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
    pm = formatter(results)
    severity = max(next(iter(methods.values()))["shift_by_kind"], key=int)
    kinds = list(next(iter(methods.values()))["shift_by_kind"][severity])
    names = [method_label(m) for m in methods]
    lines = [f"### Per corruption kind at severity {severity}", "",
             "Every (kind, severity) cell is in results.json (shift_by_kind) and results.csv "
             "(section shift_kind).", ""]
    for metric in ("accuracy", "ece", "brier"):
        lines += [f"**{METRIC_LABELS[metric]}**", "", "| kind | " + " | ".join(names) + " |",
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
    pm = formatter(results)
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
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    lines += ["", "| method | score | AUROC | AUPR | FPR@95%TPR |", "|---|---|---:|---:|---:|"]
    for method, entry in methods.items():
        for score, values in entry["ood"].items():
            lines.append(f"| {method_label(method)} | {score} | "
                         f"{pm(values['auroc'])} | {pm(values['aupr'])} | "
                         f"{pm(values['fpr95'])} |")
    lines.append("")
    return lines


def training_fit_table(results: dict) -> list[str]:
    """Markdown lines: per method the last epoch's training loss and accuracy, the validation
    NLL and accuracy, beside the test ones (mean ± std over seeds)."""
    methods = results["methods"]
    pm = formatter(results)
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
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return lines

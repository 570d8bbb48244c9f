"""The benchmark's ``report.md``: protocol, method settings, the clean test set (raw and
"+TS", selective prediction), the tables of :mod:`.benchmark_tables`, shift by severity, OOD,
the papers' orderings with their verdicts, figures; and :func:`write_reports`, which writes
``results.json``, ``results.csv`` and ``report.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..methods.claims import BENCHMARK_CLAIMS
from ._format import plural
from .benchmark import (
    CLAIM_METRIC_LABELS,
    FIGURES,
    METRIC_LABELS,
    SELECTIVE_METRICS,
    benchmark_figure_names,
    formatter,
    results_csv,
)
from .benchmark_tables import (
    cost_lines,
    method_settings_lines,
    ood_lines,
    per_kind_lines,
    temperature_lines,
    training_fit_table,
)
from .labels import method_label
from .verdicts import Row, bootstrap_intro, comparison_row
from .verdicts import verdict_lines as write_verdict_lines


def markdown(results: dict) -> str:
    """The human-readable report: protocol, method settings, tables (clean with "+TS" rows and
    selective prediction, temperature scaling, cost, shift by severity and by kind, OOD), the
    papers' orderings, figures."""
    p = results["protocol"]
    methods = results["methods"]
    seeds = results["seeds"]
    pm = formatter(results)
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
        f"- Methods: {', '.join(method_label(m) for m in methods)}; backbone {backbone}.",
        f"- Members: {p['members']} (Masksembles scale {p['masksembles_scale']:g}; MC-Dropout "
        f"p = {p['mc_dropout_p']:g} with {p['mc_samples']} stochastic passes), unless a "
        "method's own setting below says otherwise.",
        f"- Training: {plural(train['epochs'], 'epoch')}, batch {train['batch_size']}, "
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
              *(METRIC_LABELS[key] for key in selective), "train s"]
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
        lines.append(f"| {method_label(method)} | " + " | ".join(cells)
                     + f" | {entry['train_seconds']:.1f} |")
        calibrated = entry.get("calibrated")
        if calibrated:
            c = calibrated["test"]
            cells = [pm(c[key]) if key in c else "n/a"
                     for key in ("accuracy", "nll", "brier", "ece", *selective)]
            # the same trained model: no training of its own
            lines.append(f"| {method_label(method)} +TS | " + " | ".join(cells)
                         + " | as raw |")
    lines += ["", *temperature_lines(results)]
    lines += ["", *training_fit_table(results)]
    lines += ["", *cost_lines(results)]

    if all("shift" in entry for entry in methods.values()):
        severities = list(next(iter(methods.values()))["shift"])
        lines += ["", "## Under shift", ""]
        for metric in ("accuracy", "ece", "nll", "brier"):
            lines += [f"### {METRIC_LABELS[metric]} by severity", "",
                      "| method | clean | " + " | ".join(severities) + " | mean |",
                      "|---|" + "---:|" * (len(severities) + 2)]
            for method, entry in methods.items():
                cells = [pm(entry["test"][metric])]
                cells += [pm(entry["shift"][s][metric]) for s in severities]
                cells.append(pm(entry["shift_overall"][metric]))
                lines.append(f"| {method_label(method)} | " + " | ".join(cells)
                             + " |")
            lines.append("")
        lines += per_kind_lines(results)

    if all("ood" in entry for entry in methods.values()):
        lines += ood_lines(results)

    lines += ["## Do the papers' orderings hold here?", "", *verdict_lines(results),
              "", "## Figures", ""]
    drawn = benchmark_figure_names(results)
    for name, caption in FIGURES:
        if name in drawn:
            lines.append(f"- {caption}: ![{caption}](figures/{name})")
    return "\n".join(lines) + "\n"


def verdict_lines(results: dict) -> list[str]:
    """Markdown lines of ``results["orderings"]``: per claim its verdict and a table of its
    comparisons, each difference with its bootstrap interval."""
    claims = results.get("orderings") or []
    boot = results.get("bootstrap")
    intro = [] if not claims else bootstrap_intro(
        boot, recomputed=" (ECE and AUROC on the resampled set)",
        notes=" Shift ECE: the mean ECE over every corruption kind and severity; OOD AUROC: "
              "entropy of the mean prediction.")
    return write_verdict_lines(claims, _verdict_row, unchecked=BENCHMARK_CLAIMS.unchecked,
                               intro=intro)


def _verdict_row(claim: dict, comparison: dict) -> Row:
    return comparison_row(comparison, CLAIM_METRIC_LABELS)


def write_reports(out: str | Path, results: dict, records: dict) -> None:
    """Write ``results.json``, ``results.csv`` and ``report.md`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.csv", results_csv(results))
    atomic_write_text(out / "report.md", markdown(results))

"""Figures of the benchmark (``ensemblekit benchmark``), from its ``results.json`` content
and run records: accuracy and ECE against corruption severity, risk-coverage curves,
reliability diagrams, OOD score histograms and the verdicts' bootstrap intervals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..methods import method_entries
from ..report.benchmark import CLAIM_METRIC_LABELS, benchmark_figure_names
from ..report.labels import short_label
from ..stats.claims import CLAIM_METRICS
from ._style import label, method_style, new_figure, save_figure

#: In- and out-of-distribution inputs in the OOD histograms.
IN_COLOR, OUT_COLOR = "#1f77b4", "#ff7f0e"


def benchmark_figures(folder: str | os.PathLike, results: dict, records: dict) -> list[Path]:
    """Every benchmark figure that the results allow; returns the paths written."""
    folder = Path(folder)
    methods = list(results["methods"])
    written = []
    drawn = benchmark_figure_names(results)
    if "shift_vs_severity.png" in drawn:
        written.append(shift_vs_severity(results, folder / "shift_vs_severity.png"))
    if "risk_coverage.png" in drawn:
        written.append(risk_coverage(results, folder / "risk_coverage.png"))
    by_method = {m: [r for (name, _), r in records.items() if name == m] for m in methods}
    written.append(reliability_diagrams(
        {m: [r["reliability"] for r in runs] for m, runs in by_method.items()},
        folder / "reliability.png", title=f"Reliability on the clean {results['dataset']} test "
                                          "set"))
    if "ood_histograms.png" in drawn:
        ood = results["protocol"]["ood"]
        written.append(ood_histograms(
            {m: [r["ood_histograms"] for r in runs] for m, runs in by_method.items()},
            {m: results["methods"][m]["ood"] for m in methods},
            folder / "ood_histograms.png", score="entropy",
            title=f"Entropy of the mean prediction: {results['dataset']} test (in) vs {ood} "
                  "(out)"))
    if "verdicts.png" in drawn:
        written.append(verdict_intervals(results["orderings"], folder / "verdicts.png"))
    return written


#: Colours of the three verdicts.
VERDICT_COLORS = {"holds": "#2ca02c", "does not hold": "#d62728", "inconclusive": "#7f7f7f"}


def verdict_intervals(orderings: list[dict], path: str | os.PathLike, *,
                      metrics: Sequence[str] = CLAIM_METRICS,
                      metric_labels: dict[str, str] = CLAIM_METRIC_LABELS) -> Path:
    """One panel per metric: every comparison of the report's orderings as its difference
    with the 95 % bootstrap interval, oriented so that the claimed direction is to the right
    of 0 (differences whose claim is "lower" are negated), coloured by verdict. ``metrics``:
    the panels' order (the classification claims' by default); ``metric_labels``: their
    titles."""
    rows: dict[str, list] = {}
    for claim in orderings:
        for comparison in claim["comparisons"]:
            sign = 1.0 if comparison["claimed"] == "positive" else -1.0
            d = comparison["difference"]
            low, high = sorted((sign * d["low"], sign * d["high"]))
            rows.setdefault(comparison["metric"], []).append(
                (comparison["statement"], sign * d["estimate"], low, high,
                 comparison["verdict"]))
    metrics = [m for m in metrics if m in rows]
    counts = [len(rows[m]) for m in metrics]
    figure = new_figure(7.0, 0.32 * sum(counts) + 0.75 * len(metrics) + 0.9)
    axes = figure.subplots(len(metrics), 1, squeeze=False,
                           gridspec_kw={"height_ratios": [n + 1.2 for n in counts]})[:, 0]
    for axis, metric in zip(axes, metrics, strict=True):
        entries = rows[metric]
        ys = np.arange(len(entries))[::-1]
        for y, (_, estimate, low, high, verdict) in zip(ys, entries, strict=True):
            colour = VERDICT_COLORS[verdict]
            axis.plot([low, high], [y, y], color=colour, linewidth=2.2)
            axis.plot([estimate], [y], marker="o", color=colour, markersize=5)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_title(metric_labels[metric], fontsize=9, loc="left")
        axis.grid(axis="x", alpha=0.3)
        axis.set_yticks(ys, [_short_statement(e[0]) for e in entries], fontsize=8)
        axis.set_ylim(-0.6, len(entries) - 0.4)
        axis.tick_params(axis="x", labelsize=8)
    axes[-1].set_xlabel("difference, oriented so that the claimed direction is > 0", fontsize=8)
    from matplotlib.lines import Line2D  # matplotlib: heavy, needed only when drawing

    handles = [Line2D([], [], color=colour, linewidth=2.2, label=verdict)
               for verdict, colour in VERDICT_COLORS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False,
                  fontsize=8)
    figure.suptitle("Paired bootstrap: differences and 95 % intervals of the papers' orderings",
                    fontsize=10)
    return save_figure(figure, path)


def _short_statement(statement: str) -> str:
    """Method labels shortened (the registry's methods, longest label first) so that a
    comparison fits beside its panel."""
    if statement.startswith("|"):  # |m - near| - |m - far|
        method, near = statement[1:].split("|")[0].split(" - ")
        far = statement.split("|")[3].split(" - ")[1]
        statement = f"{method} nearer {near} than {far}"
    for entry in sorted(method_entries(), key=lambda e: -len(e.label)):
        statement = statement.replace(entry.label, short_label(entry.name))
    return statement.replace(" better than ", " > ")


_SEVERITY_LABELS = {"ece": "ECE", "accuracy": "accuracy", "nll": "NLL", "brier": "Brier"}


def ece_vs_severity(results: dict, path: str | os.PathLike, *, metric: str = "ece") -> Path:
    """One line per method: ``metric`` on the clean set (severity 0) and at each severity,
    mean with error bars of one std over seeds; the legend outside, right of the axes."""
    return shift_vs_severity(results, path, metrics=(metric,))


def shift_vs_severity(results: dict, path: str | os.PathLike, *,
                      metrics: Sequence[str] = ("accuracy", "ece")) -> Path:
    """One panel per metric (default accuracy beside ECE), one line per method: the metric on
    the clean set (severity 0) and at each severity (mean over corruption kinds), with error
    bars of one std over seeds (none for one seed); one legend outside the panels."""
    figure = new_figure(3.6 * len(metrics) + 1.7, 3.6)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    methods = results["methods"]
    severities = list(next(iter(methods.values()))["shift"])
    xs = [0, *map(int, severities)]
    count = len(methods)
    seeds = len(results["seeds"])
    for axis, metric in zip(axes, metrics, strict=True):
        for index, (method, entry) in enumerate(methods.items()):
            colour, marker = method_style(method)
            values = [entry["test"][metric], *(entry["shift"][s][metric] for s in severities)]
            offset = (index - (count - 1) / 2) * 0.06  # keeps error bars apart
            axis.errorbar([x + offset for x in xs], [v["mean"] for v in values],
                          yerr=[v["std"] for v in values] if seeds > 1 else None,
                          color=colour, marker=marker, markersize=5, capsize=3,
                          linewidth=1.6, label=label(method))
        axis.set_xticks(xs, ["clean", *severities])
        axis.set_xlabel("corruption severity")
        name = _SEVERITY_LABELS.get(metric, metric)
        axis.set_ylabel(f"{name} (mean over corruption kinds)")
        if metric != "accuracy":
            axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.set_title(name, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False)
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed"
    figure.suptitle(f"Under shift on {results['dataset']} ({spread})", fontsize=11)
    return save_figure(figure, path)


def risk_coverage(results: dict, path: str | os.PathLike) -> Path:
    """One line per method: the risk (error rate of the accepted inputs) against the coverage
    (share accepted, most confident first), from each method's ``risk_coverage``
    (:func:`ensemblekit.report.risk_coverage_mean`); the whole curve on the left and, on the
    right, the coverages where any method's risk leaves 0 (where methods differ); AURC in
    the legend, which sits outside."""
    figure = new_figure(9.4, 3.8)
    whole, zoom = figure.subplots(1, 2)
    start = 1.0
    for method, entry in results["methods"].items():
        curve = entry.get("risk_coverage")
        if not curve:
            continue
        colour, _ = method_style(method)
        aurc = entry["test"].get("aurc", {}).get("mean")
        name = label(method) + (f" (AURC {aurc:.4f})" if aurc is not None else "")
        coverage, risk = np.asarray(curve["coverage"]), np.asarray(curve["risk"])
        for axis in (whole, zoom):
            axis.step(coverage, risk, where="post", color=colour, linewidth=1.6,
                      label=name if axis is whole else None)
        nonzero = np.flatnonzero(risk > 0)
        if nonzero.size:
            start = min(start, float(coverage[max(nonzero[0] - 1, 0)]))
    whole.set_xlim(0, 1)
    zoom.set_xlim(max(0.0, start - 0.02), 1.0)
    for axis in (whole, zoom):
        axis.set_ylim(bottom=0)
        axis.set_xlabel("coverage (share accepted, most confident first)")
        axis.grid(alpha=0.3)
    whole.set_ylabel("risk (error rate of the accepted)")
    whole.set_title("whole curve", fontsize=10)
    zoom.set_title("where the risk leaves 0", fontsize=10)
    seeds = len(results["seeds"])
    figure.suptitle(f"Risk-coverage on the clean {results['dataset']} test set "
                    f"({'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'})",
                    fontsize=11)
    figure.legend(loc="outside right center", fontsize=8, frameon=False)
    return save_figure(figure, path)


def reliability_diagrams(
    bins_by_method: dict[str, list[dict]], path: str | os.PathLike, *, title: str = ""
) -> Path:
    """One panel per method: accuracy per confidence bin (bars) against the diagonal.

    ``bins_by_method``: ``{method: [reliability dict per seed]}`` with ``edges``, ``count``,
    ``accuracy``, ``confidence`` as from ``reliability_bins``; seeds are pooled (counts summed,
    means weighted by count). The black-hatched part of a bar is the gap to perfect
    calibration; the pooled ECE sits in the panel title and the legend below the panels, off
    the bars.
    """
    methods = list(bins_by_method)
    figure = new_figure(2.5 * len(methods) + 0.5, 3.2)
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    for axis, method in zip(axes, methods, strict=True):
        edges, count, accuracy, confidence = _pool_bins(bins_by_method[method])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        used = count > 0
        colour, _ = method_style(method)
        axis.bar(centres[used], accuracy[used], width=width[used], color=colour, alpha=0.8,
                 edgecolor="white", linewidth=0.5, label="accuracy")
        gap_low = np.minimum(accuracy, confidence)[used]
        axis.bar(centres[used], np.abs(confidence - accuracy)[used], bottom=gap_low,
                 width=width[used], facecolor="none", edgecolor="black", hatch="///",
                 linewidth=0.0, label="gap")
        axis.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1)
        total = count.sum()
        ece = float(np.sum(count[used] / total * np.abs(accuracy - confidence)[used]))
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        # in the title, not over the bars
        axis.set_title(f"{label(method)}\npooled ECE {ece:.3f}", fontsize=10)
        axis.set_xlabel("confidence")
        if axis is not axes[0]:
            axis.tick_params(labelleft=False)
    axes[0].set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8,
                  frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def ood_histograms(
    histograms_by_method: dict[str, list[dict]],
    metrics_by_method: dict[str, dict],
    path: str | os.PathLike,
    *,
    score: str = "entropy",
    title: str = "",
) -> Path:
    """One panel per method: the distribution of an OOD ``score`` on in- and out-of-
    distribution inputs (seeds pooled; densities) as step outlines (in solid, out dashed: no
    fill hides the other), with the AUROC in the panel title; the legend outside."""
    methods = list(histograms_by_method)
    figure = new_figure(2.6 * len(methods) + 0.4, 2.8)
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    for axis, method in zip(axes, methods, strict=True):
        runs = histograms_by_method[method]
        edges = np.asarray(runs[0][score]["edges"])
        width = np.diff(edges)
        for side, colour, name in (("in", IN_COLOR, "in"), ("out", OUT_COLOR, "out")):
            counts = np.sum([np.asarray(run[score][side], dtype=float) for run in runs], axis=0)
            density = counts / max(counts.sum(), 1) / width
            axis.stairs(density, edges, color=colour, linewidth=1.5, label=name,
                        linestyle="-" if side == "in" else "--")
        auroc = metrics_by_method[method][score]["auroc"]["mean"]
        axis.set_title(f"{label(method)}\nAUROC {auroc:.3f}", fontsize=10)
        axis.set_xlabel(score.replace("_", " "))
        axis.set_yscale("log")
        axis.set_xlim(edges[0], edges[-1])
    axes[0].set_ylabel("density (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False,
                  title="inputs")
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def _pool_bins(runs: list[dict]):
    """Sum reliability bins over seeds: counts add, per-bin means weighted by count."""
    edges = np.asarray(runs[0]["edges"], dtype=float)
    count = np.sum([np.asarray(r["count"], dtype=float) for r in runs], axis=0)
    correct = np.sum([np.asarray(r["accuracy"]) * np.asarray(r["count"]) for r in runs], axis=0)
    confident = np.sum([np.asarray(r["confidence"]) * np.asarray(r["count"]) for r in runs],
                       axis=0)
    safe = np.maximum(count, 1)
    return edges, count, correct / safe, confident / safe

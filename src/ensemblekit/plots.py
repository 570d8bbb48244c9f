"""Figures of the experiments, drawn with matplotlib's Agg canvas and written atomically as PNG.

No global matplotlib state is touched (no pyplot): each function builds its own ``Figure`` on a
``FigureCanvasAgg``, so figures render the same with or without a display and from any thread.
Every method keeps one colour and marker across all figures.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .report import METHOD_LABELS, benchmark_figure_names

METHOD_STYLES = {
    "single": ("#4d4d4d", "o"),
    "mc_dropout": ("#1f77b4", "s"),
    "masksembles": ("#d62728", "D"),
    "batchensemble": ("#2ca02c", "^"),
    "deep_ensemble": ("#9467bd", "v"),
}
_OTHER_STYLE = ("#8c564b", "x")
IN_COLOR, OUT_COLOR = "#1f77b4", "#ff7f0e"


def new_figure(width: float, height: float):
    """A ``Figure`` on an Agg canvas, laid out automatically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | os.PathLike) -> Path:
    """Render ``figure`` to PNG at ``path`` atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def method_style(method: str) -> tuple[str, str]:
    """``(colour, marker)`` of a method."""
    return METHOD_STYLES.get(method, _OTHER_STYLE)


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


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


def verdict_intervals(orderings: list[dict], path: str | os.PathLike) -> Path:
    """One panel per metric: every comparison of the report's orderings as its difference
    with the 95 % bootstrap interval, oriented so that the claimed direction is to the right
    of 0 (differences whose claim is "lower" are negated), coloured by verdict."""
    from .report import CLAIM_METRIC_LABELS, CLAIM_METRICS

    rows: dict[str, list] = {}
    for claim in orderings:
        for comparison in claim["comparisons"]:
            sign = 1.0 if comparison["claimed"] == "positive" else -1.0
            d = comparison["difference"]
            low, high = sorted((sign * d["low"], sign * d["high"]))
            rows.setdefault(comparison["metric"], []).append(
                (comparison["statement"], sign * d["estimate"], low, high,
                 comparison["verdict"]))
    metrics = [m for m in CLAIM_METRICS if m in rows]
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
        axis.set_title(CLAIM_METRIC_LABELS[metric], fontsize=9, loc="left")
        axis.grid(axis="x", alpha=0.3)
        axis.set_yticks(ys, [_short_statement(e[0]) for e in entries], fontsize=8)
        axis.set_ylim(-0.6, len(entries) - 0.4)
        axis.tick_params(axis="x", labelsize=8)
    axes[-1].set_xlabel("difference, oriented so that the claimed direction is > 0", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour, linewidth=2.2, label=verdict)
               for verdict, colour in VERDICT_COLORS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False,
                  fontsize=8)
    figure.suptitle("Paired bootstrap: differences and 95 % intervals of the papers' orderings",
                    fontsize=10)
    return save_figure(figure, path)


def _short_statement(statement: str) -> str:
    """Method labels shortened so that a comparison fits beside its panel."""
    if statement.startswith("|"):  # |m - near| - |m - far|
        method, near = statement[1:].split("|")[0].split(" - ")
        far = statement.split("|")[3].split(" - ")[1]
        statement = f"{method} nearer {near} than {far}"
    for long, short in (("Single model", "single"), ("Deep Ensemble", "DE"),
                        ("MC-Dropout", "MCD"), ("Masksembles", "MS"),
                        ("BatchEnsemble", "BE"), (" better than ", " > ")):
        statement = statement.replace(long, short)
    return statement


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


#: Panels per row of the toy figure's grid (legible at 100% zoom: about 3 inches a panel).
TOY_COLUMNS = 4


def entropy_maps(
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    xs: np.ndarray,
    ys: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    max_entropy: float,
    title: str = "",
    columns: int = TOY_COLUMNS,
) -> Path:
    """A grid of predictive-entropy maps (one per model, ``columns`` per row) with the training
    points on top, a legend of the classes and one colour bar.

    ``maps``: ``(len(ys), len(xs))`` arrays of entropies in nats; one colour scale from 0 to
    ``max_entropy`` (log K) for all panels, so panels compare directly. ``points`` (N, 2) with
    ``labels`` (N,).
    """
    from matplotlib.lines import Line2D

    count = len(maps)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    aspect = float((ys[-1] - ys[0]) / (xs[-1] - xs[0]))  # panels keep the plane's proportions
    figure = new_figure(3.0 * columns + 1.3, 3.0 * aspect * rows + 1.1)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    image = None
    classes = np.unique(labels)
    colours = ["white", "#ff4040", "#40c0ff", "#ffb000"]
    for axis, entropy, name in zip(axes, maps, titles, strict=False):
        image = axis.pcolormesh(xs, ys, entropy, cmap="viridis", vmin=0.0, vmax=max_entropy,
                                shading="auto", rasterized=True)
        for index, cls in enumerate(classes):
            chosen = labels == cls
            axis.scatter(points[chosen, 0], points[chosen, 1], s=7,
                         c=colours[index % len(colours)], linewidths=0.3,
                         edgecolors="black", alpha=0.9)
        axis.set_title(name, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_aspect("equal")
    for axis in axes[count:]:
        axis.set_visible(False)
    colourbar = figure.colorbar(image, ax=list(axes[:count]), shrink=0.8, pad=0.02)
    colourbar.set_label("predictive entropy (nats)")
    handles = [Line2D([], [], linestyle="", marker="o", markersize=7,
                      markerfacecolor=colours[index % len(colours)], markeredgecolor="black",
                      label=f"class {cls}") for index, cls in enumerate(classes)]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(classes),
                  fontsize=9, frameon=False, title="training points")
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def diversity_heatmaps(
    matrices: dict[str, dict[str, np.ndarray]],
    path: str | os.PathLike,
    *,
    rows: Sequence[tuple[str, str, tuple[float, float] | None]],
    title: str = "",
) -> Path:
    """A grid of member x member heatmaps: one column per method, one row per measure.

    ``matrices[method][measure]`` is an (M, M) array; ``rows`` lists ``(measure, caption,
    (vmin, vmax) or None)``; ``None`` shares one scale across the row's methods. Each cell is
    annotated with its value.
    """
    methods = list(matrices)
    figure = new_figure(2.35 * len(methods) + 1.0, 2.3 * len(rows) + 0.4)
    axes = figure.subplots(len(rows), len(methods), squeeze=False)
    for row, (measure, caption, limits) in enumerate(rows):
        values = [np.asarray(matrices[m][measure], dtype=float) for m in methods]
        if limits is None:
            finite = np.concatenate([v[np.isfinite(v)].ravel() for v in values] or [[0.0]])
            limits = (0.0, float(finite.max()) if finite.size else 1.0)
            if limits[1] <= limits[0]:
                limits = (limits[0], limits[0] + 1e-9)
        image = None
        for column, (method, matrix) in enumerate(zip(methods, values, strict=True)):
            axis = axes[row][column]
            image = axis.imshow(matrix, cmap="magma", vmin=limits[0], vmax=limits[1])
            size = matrix.shape[0]
            if size <= 8:
                for i in range(size):
                    for j in range(size):
                        shade = (matrix[i, j] - limits[0]) / (limits[1] - limits[0])
                        colour = "black" if math.isfinite(shade) and shade > 0.6 else "white"
                        axis.text(j, i, _short(matrix[i, j]), ha="center", va="center",
                                  fontsize=7, color=colour)
            axis.set_xticks(range(size), [str(i + 1) for i in range(size)], fontsize=7)
            axis.set_yticks(range(size), [str(i + 1) for i in range(size)], fontsize=7)
            if row == 0:
                axis.set_title(label(method), fontsize=10)
            if column == 0:
                axis.set_ylabel(caption, fontsize=9)
        figure.colorbar(image, ax=list(axes[row]), shrink=0.9, pad=0.01)
    if title:
        figure.suptitle(title, fontsize=11)
    return save_figure(figure, path)


def sweep_plot(
    sweep: dict,
    path: str | os.PathLike,
    *,
    metrics: Sequence[tuple[str, str]],
    title: str = "",
) -> Path:
    """Masksembles metrics against scale, one line per member count n, with the reference
    methods as horizontal lines (their band: ± one std over seeds).

    ``sweep``: ``{"masksembles": {n: {scale: {metric: {"mean", "std"}}}}, "references":
    {method: {metric: {"mean", "std"}}}}``; ``metrics``: ``(key, axis label)`` pairs.
    """
    figure = new_figure(3.1 * len(metrics) + 2.0, 3.3)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    grid = sweep["masksembles"]
    ns = sorted(grid, key=int)
    shades = _shades(len(ns))
    for axis, (metric, caption) in zip(axes, metrics, strict=True):
        for colour, n in zip(shades, ns, strict=True):
            scales = sorted(grid[n], key=float)
            means = [grid[n][s][metric]["mean"] for s in scales]
            stds = [grid[n][s][metric]["std"] for s in scales]
            axis.errorbar([float(s) for s in scales], means, yerr=stds, color=colour,
                          marker="D", markersize=4, capsize=2, label=f"Masksembles n={n}")
        for method, values in sweep.get("references", {}).items():
            if metric not in values:  # e.g. the disagreement of a single model
                continue
            colour, _ = method_style(method)
            mean, std = values[metric]["mean"], values[metric]["std"]
            axis.axhline(mean, color=colour, linestyle="--", linewidth=1.2, label=label(method))
            if std > 0:
                axis.axhspan(mean - std, mean + std, color=colour, alpha=0.12, linewidth=0)
        axis.set_xscale("log")
        all_scales = sorted({float(s) for n in ns for s in grid[n]})
        axis.set_xticks(all_scales, [f"{s:g}" for s in all_scales])
        axis.minorticks_off()
        axis.set_xlabel("Masksembles scale")
        axis.set_title(caption, fontsize=10)
        axis.grid(alpha=0.3)
    # The first panel has every line (a single model has no disagreement): one legend for all.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
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


def _shades(count: int) -> list:
    """``count`` reds from light to dark (Masksembles' colour, one per member count)."""
    from matplotlib import colormaps

    cmap = colormaps["Reds"]
    return [cmap(0.45 + 0.5 * i / max(count - 1, 1)) for i in range(count)]


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"

"""The ``ensemblekit tune`` report: ``tune.md``, ``tune.csv`` and ``tuned.toml``, each a pure
function of the ``tune.json`` content (:func:`ensemblekit.experiments.tune.run_tune`).

Values print as ``mean ± std`` over seeds with 4 decimals, the mean alone for one seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ._format import pm

#: The per-point metrics of the CSV (each as ``<key>_mean``, ``<key>_std``), in its order.
CSV_METRICS = ("nll", "ece", "brier", "accuracy", "ood_auroc", "train_loss", "train_accuracy")
#: Captions of the cost kinds (ratios to the single model).
COST_CAPTIONS = {"latency": "latency", "params": "parameters", "flops": "FLOPs (inference)"}
#: The cost kinds of the Pareto-front tables, in the report's order.
FRONT_TABLE_KINDS = ("latency", "flops", "params")
#: The ``[method_options.<method>]`` key of a method's own epochs.
METHOD_EPOCHS = "epochs"


#: The columns of a classification tune (a regression tune's result states its own):
#: validation metrics as ``[key, name]``, the training fit, the CSV's metrics.
CLASSIFICATION_COLUMNS = {
    "validation": [["nll", "NLL"], ["ece", "ECE"], ["accuracy", "acc"]],
    "fit": ["train_accuracy", "train acc"],
    "csv": list(CSV_METRICS),
}


def columns(result: dict) -> dict:
    """The result's columns (``result["columns"]``), else a classification tune's."""
    return result.get("columns", CLASSIFICATION_COLUMNS)


def _pm(value: dict) -> str:
    return pm(value, digits=4, alone_if_exact=True)


def front_kinds(result: dict) -> list[str]:
    """The cost kinds the Pareto fronts were drawn for (``result["fronts"]``: ``"kind/metric"``)."""
    return list(dict.fromkeys(name.split("/")[0] for name in result["fronts"]))


def metric_name(result: dict, metric: str) -> str:
    """How the report and the figure name a front's metric (``"NLL"``, ``"ECE"``...)."""
    names = {key: name for key, name in columns(result)["validation"]}
    return metric.upper() if metric in ("nll", "ece") else names.get(metric, metric)


def front_metrics(result: dict) -> list[str]:
    """The validation metrics the Pareto fronts set against cost."""
    return list(dict.fromkeys(name.split("/")[1] for name in result["fronts"]))


def tuned_toml(result: dict) -> str:
    """A ``benchmark`` config: the tune run's protocol (``result["settings"]``, the tune
    settings as a dict) and each method's picked options."""
    settings = result["settings"]
    rows = {row["id"]: row for row in result["rows"]}
    picks = result["picks"]
    chosen = [method for method in settings["methods"] if picks.get(method) is not None]
    budget = f" within the budget {settings['budget']}" if settings["budget"] else ""
    out = Path(settings["out"])
    lines = [
        f"# ensemblekit benchmark settings chosen by `ensemblekit tune` on "
        f"{settings['dataset']}.",
        "# Each [method_options.<method>] table is that method's grid point of lowest mean NLL "
        "on the",
        f"# VALIDATION split (validation_fraction = {settings['validation_fraction']:g} of the "
        "training split, held out",
        f"# from training) over {settings['seeds']} seed(s){budget}; the test set was not used "
        "to choose anything.",
        f"# Produced by: {result['command'] or 'ensemblekit.experiments.run_tune (from Python)'}",
        f"# The grid, its fronts and costs: {out / 'tune.md'}",
        f"# Run: ensemblekit benchmark{_task_flag(result)} --config {out / 'tuned.toml'}",
        'command = "benchmark"',
    ]
    for key in ("dataset", "backbone", "width", "hidden", "epochs", "members", "scale",
                "dropout", "independent_batches", "validation_fraction"):
        value = settings[key]
        if value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    left_out = [method for method in settings["methods"] if method not in chosen]
    if left_out:
        lines.append(f"# no configuration of {', '.join(left_out)} is within the budget: left "
                     "out of methods")
        lines.append(f"methods = {toml_value(chosen)}")
    lines += ["", "[train]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in sorted(settings["train"].items())
              if value is not None]
    for method in chosen:
        row = rows[picks[method]]
        own = {**settings["method_options"].get(method, {}), **row["options"]}
        if row["epochs"] != settings["epochs"]:
            own[METHOD_EPOCHS] = row["epochs"]
        else:
            own.pop(METHOD_EPOCHS, None)
        cost = row["cost"]
        scores = ", ".join(f"{'accuracy' if name == 'acc' else name} {_pm(row[key])}"
                           for key, name in columns(result)["validation"])
        lines += ["", f"# {method}: {row['label']}, epochs {row['epochs']}: validation "
                      f"{scores};",
                  f"# cost x single: latency {cost['latency_ratio']:.2f}, parameters "
                  f"{cost['params_ratio']:.2f}, FLOPs {cost['inference_flops_ratio']:.2f}"]
        if own:
            lines.append(f"[method_options.{method}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in own.items()]
    return "\n".join(lines) + "\n"


def tune_csv(rows: list[dict], metrics=CSV_METRICS) -> str:
    """One line per grid point: options, validation ``metrics`` (mean, std), fit, cost,
    marks."""
    header = ["method", "setting", "epochs", "seeds"]
    for key in metrics:
        header += [f"{key}_mean", f"{key}_std"]
    cost_keys = ["params", "params_ratio", "flops_per_sample", "flops_ratio",
                 "inference_flops_per_sample", "inference_flops_ratio",
                 "latency_ms_per_sample", "latency_ratio", "latency_ratio_to_single",
                 "inference"]
    header += [*cost_keys, "within_budget", "picked", "fronts"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells = [row["method"], row["label"], row["epochs"], row["seeds"]]
        for key in metrics:
            value = row[key]
            cells += ["", ""] if value is None else [value["mean"], value["std"]]
        cells += [row["cost"][key] for key in cost_keys]
        cells += [row["within_budget"], row["picked"], " ".join(row["fronts"])]
        writer.writerow(cells)
    return buffer.getvalue()


def tune_markdown(result: dict, cost_entries: dict[str, str]) -> str:
    """The report: protocol, picks, the grid table, the fronts and the figure.

    ``cost_entries``: ``{cost kind: the cost entry its ratio is}`` (``{"latency":
    "latency_ratio", ...}``), the kinds of the Pareto fronts.
    """
    rows = result["rows"]
    by_id = {row["id"]: row for row in rows}
    protocol = result["protocol"]
    cost = protocol["cost"]
    lines = [
        f"# Tuning on {result['dataset']} (validation split)",
        "",
        f"Command: `{result['command'] or 'run_tune (Python)'}`",
        "",
        f"Backbone {protocol['backbone']} (width {protocol['width']}), {protocol['epochs']} "
        f"epochs (x the point's epochs factor), seeds {protocol['seeds']}. Every point is "
        f"trained on the training split less its validation part (fraction "
        f"{protocol['validation_fraction']:g}) and scored on that validation part only: "
        "the test set is never used.",
        f"Selection: {protocol['selection']}. OOD: {protocol['ood']}.",
        f"Cost: ratios to the single model measured in the same process "
        f"({cost['threads']} thread(s), {cost['device']}, batch {cost['batch']}, latency "
        f"{cost['latency']}, >= {cost['min_seconds']:g} s of calls per model over "
        f"{cost['rounds']} rounds). Masksembles is timed through compile_members and divided "
        "by the single network compiled the same way (BatchNorm folded, channels-last: "
        f"{_ratio_text(cost)}); every other method through predict_members, divided by the "
        "single model's predict_members; 'latency x plain' divides everything by the latter. "
        "FLOPs (predict_members) counts Masksembles tiled (M full passes); FLOPs (inference) "
        "the path that is timed. The budget's latency and flops are 'latency x' and 'FLOPs x "
        "(inference)'.",
        "",
    ]
    if result["budget"]["text"]:
        lines += [f"Budget: `{result['budget']['text']}` (picks only within it).", ""]
    shown = columns(result)
    heads = " | ".join(f"val {name}" for _, name in shown["validation"])
    fit_key, fit_name = shown["fit"]
    lines += ["## Picks (written to tuned.toml)", "",
              f"| method | setting | epochs | {heads} | latency x | "
              "params x |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for method, name in result["picks"].items():
        if name is None:
            lines.append(f"| {method} | none within the budget | | | | | | |")
            continue
        row = by_id[name]
        lines.append(f"| {method} | {row['label']} | {row['epochs']} | {_scores(row, shown)} | "
                     f"{row['cost']['latency_ratio']:.2f} | {row['cost']['params_ratio']:.2f} |")
    lines += ["", "## Every grid point", "",
              f"| method | setting | epochs | {heads} | OOD AUROC | train "
              f"loss | {fit_name} | train s | params x | FLOPs x (predict_members) | FLOPs x "
              "(inference) | latency x | latency x plain | marks |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        marks = (["picked"] if row["picked"] else []) + (
            [] if row["within_budget"] else ["over budget"]) + [
            f"front {name}" for name in row["fronts"] if name.startswith("latency/")]
        c = row["cost"]
        ood = "-" if row["ood_auroc"] is None else _pm(row["ood_auroc"])
        lines.append(
            f"| {row['method']} | {row['label']} | {row['epochs']} | {_scores(row, shown)} | "
            f"{ood} | {_pm(row['train_loss'])} | "
            f"{_pm(row[fit_key])} | {row['train_seconds']['mean']:.1f} | "
            f"{c['params_ratio']:.2f} | {c['flops_ratio']:.2f} "
            f"| {c['inference_flops_ratio']:.2f} | {c['latency_ratio']:.2f} | "
            f"{c['latency_ratio_to_single']:.2f} | {', '.join(marks)} |")
    for kind in sorted(front_kinds(result), key=_table_position):
        caption = COST_CAPTIONS.get(kind, kind)
        for metric in front_metrics(result):
            name = metric_name(result, metric)
            lines += ["", f"## Pareto front: {caption} vs validation {name}", "",
                      f"| {caption} x single | validation {name} | "
                      "method | setting | epochs |", "|---:|---:|---|---|---:|"]
            for name in result["fronts"][f"{kind}/{metric}"]:
                row = by_id[name]
                lines.append(f"| {row['cost'][cost_entries[kind]]:.2f} | "
                             f"{_pm(row[metric])} | {row['method']} | {row['label']} | "
                             f"{row['epochs']} |")
    lines += ["", "![Pareto fronts](pareto.png)", ""]
    return "\n".join(lines)


def _task_flag(result: dict) -> str:
    """The benchmark's ``--task`` flag (a result names its task unless it is the default)."""
    return f" --task {result['task']}" if "task" in result else ""


def _scores(row: dict, shown: dict) -> str:
    return " | ".join(_pm(row[key]) for key, _ in shown["validation"])


def _table_position(kind: str) -> int:
    """A cost kind's place among the front tables (:data:`FRONT_TABLE_KINDS`; others last)."""
    return FRONT_TABLE_KINDS.index(kind) if kind in FRONT_TABLE_KINDS else len(FRONT_TABLE_KINDS)


def toml_value(value) -> str:
    """A TOML literal of a str, bool, int, float or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML has no literal for {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML literal for {type(value).__name__} {value!r}")


def _ratio_text(cost: dict) -> str:
    times = cost["single_ms_per_batch"]
    if "compile_members" not in times:
        return "no compiled model here"
    ratio = times["compile_members"] / times["predict_members"]
    return f"{ratio:.2f}x the single model's predict_members time here"

"""``ensemblekit tune``: each method's own knob chosen on the validation split, beside its cost.

The seed's promise is that "by controlling the overlap between the masks and their size one can
choose the optimal configuration for the task at hand". ``tune`` makes that choice for every
method and keeps it honest:

* every point of a small grid per method (Masksembles ``n x scale x placement x widen``,
  MC-Dropout ``p x placement``, BatchEnsemble ``init``, optionally ``epochs_factor``; single
  and Deep Ensembles as reference points) is trained on the training split *without* its
  validation part and scored on the validation split only -- NLL, ECE, Brier, accuracy, and
  OOD AUROC (predictive entropy; the validation images against the OOD pair's test set). The
  test set is never read for a choice;
* its inference cost is measured (:mod:`~ensemblekit.experiments.cost`): parameters, FLOPs per
  sample, and latency, as ratios to the single model timed in the same process and rounds;
* the outputs: the grid table (``tune.md``, ``tune.json``, ``tune.csv``), the Pareto fronts
  of cost against validation NLL and ECE (tables, ``pareto.png``), and ``tuned.toml`` -- the
  lowest-validation-NLL point of each method (within ``budget``) as ``[method_options.*]``,
  which ``ensemblekit benchmark --config tuned.toml`` takes as is (the texts:
  :mod:`ensemblekit.report.tune`; the figure: :mod:`ensemblekit.plots.tune`).

Resumable as the benchmark is: each (point, seed) record is written atomically to
``<out>/points/<method>/<point>/seed-<seed>.json`` when it finishes; a rerun with the same
``--out`` trains only what is missing and refuses settings that would change a finished point
(the loop: :mod:`ensemblekit.experiments.runs`). Cost is measured anew at the end of
every run, for all points together, so that every ratio comes from one process.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from functools import partial
from pathlib import Path

import torch

from ..atomic import atomic_write_text
from ..data import normalizer
from ..plots.tune import pareto_figure
from ..report import mean_std
from ..report.tune import columns, tune_csv, tune_markdown, tuned_toml
from ..runtime import choose_device
from .checks import METHOD_EPOCHS, json_key
from .cost import BUDGET_ENTRIES, COST_KINDS, measure_costs, parse_budget, within_budget
from .pipeline import build, check_batch_size, train
from .roles import reference_method
from .runs import Log, RecordStore, Run, RunGrid
from .tune_settings import EPOCHS_FACTOR, TuneSettings

#: The OOD score whose AUROC the table shows (defined for every method, one member included).
OOD_SCORE = "entropy"


# -- the grid ---------------------------------------------------------------------------------

def expand_grid(settings: TuneSettings) -> list[dict]:
    """Every grid point of ``settings.methods``, in method order, then the grid's key order.

    A point is ``{"method", "options": {build option: value}, "epochs", "epochs_factor"}``;
    ``epochs`` is ``round(epochs_factor * the method's epochs)`` (at least 1). A method without a
    grid is one point with no options. Points that coincide (two factors rounding to the same
    epochs) are kept once.
    """
    points, seen = [], set()
    for method in settings.methods:
        table = settings.grid.get(method, {})
        keys = list(table)
        for values in itertools.product(*(table[key] for key in keys)):
            options = dict(zip(keys, values, strict=True))
            factor = float(options.pop(EPOCHS_FACTOR, 1.0))
            epochs = max(1, round(factor * settings.method_epochs(method)))
            point = {"method": method, "options": options, "epochs": epochs,
                     "epochs_factor": factor}
            identity = json_key([method, options, epochs])
            if identity not in seen:
                seen.add(identity)
                points.append(point)
    return points


def point_label(point: dict) -> str:
    """The point's options as ``key=value`` words (``"default"`` for none), epochs excluded."""
    words = [f"{key}={_text(value)}" for key, value in point["options"].items()]
    return " ".join(words) or "default"


def point_slug(point: dict) -> str:
    """A file-name-safe, unique name of the point (its options and epochs)."""
    text = "_".join([*point_label(point).split(), f"epochs={point['epochs']}"])
    return re.sub(r"[^A-Za-z0-9=._+-]", "-", text)


def point_id(point: dict) -> str:
    """The point's name among all methods' points: ``"<method>:<slug>"``."""
    return f"{point['method']}:{point_slug(point)}"


def point_path(out, point: dict, seed: int) -> Path:
    """Where the record of one (point, seed) is kept."""
    return Path(out) / "points" / point["method"] / point_slug(point) / f"seed-{seed}.json"


def point_settings(settings: TuneSettings, point: dict) -> TuneSettings:
    """``settings`` with the point's options and epochs as its method's ``[method_options]``
    (so that :func:`~ensemblekit.experiments.pipeline.build` and ``train`` use them)."""
    method = point["method"]
    table = {**settings.method_options.get(method, {}), **point["options"],
             METHOD_EPOCHS: point["epochs"]}
    return dataclasses.replace(settings, method_options={**settings.method_options,
                                                         method: table})


# -- choosing -----------------------------------------------------------------------------------

def pareto_front(costs, values) -> list[int]:
    """Indices of the points no other point dominates, by increasing cost.

    Point j dominates i when ``costs[j] <= costs[i]`` and ``values[j] <= values[i]`` with one
    of them strict (both are to be minimised); equal points are all kept.
    """
    costs, values = [float(c) for c in costs], [float(v) for v in values]
    if len(costs) != len(values):
        raise ValueError(f"costs and values must have the same length, got {len(costs)} and "
                         f"{len(values)}")
    order = sorted(range(len(costs)), key=lambda i: (costs[i], values[i]))
    front, best = [], math.inf  # best: the lowest value of any strictly cheaper point
    for _, group in itertools.groupby(order, key=lambda i: costs[i]):
        group = list(group)
        lowest = values[group[0]]
        if lowest < best:
            front.extend(i for i in group if values[i] == lowest)
            best = lowest
    return front


def pick_best(rows: list[dict], method: str, budget: dict[str, float]) -> dict | None:
    """The row of ``method`` with the lowest mean validation NLL among those within
    ``budget`` (ties: the lower latency); None if none is."""
    candidates = [row for row in rows if row["method"] == method
                  and within_budget(row["cost"], budget)]
    if not candidates:
        return None
    return min(candidates, key=lambda row: (row["nll"]["mean"], row["cost"]["latency_ratio"]))


# -- running ------------------------------------------------------------------------------------

def tune_store(settings: TuneSettings) -> RecordStore:
    """The tune run's records, ``points/<method>/<point>/seed-<seed>.json``. Every record in
    the folder must share the protocol, not only those of today's grid: one folder never holds
    points trained under two protocols (e.g. two --epochs); a record counts for a point only
    if it holds that point (its options and epochs)."""
    out = Path(settings.out)
    return RecordStore(out=out, fingerprint=settings.fingerprint(),
                       path=lambda run: point_path(out, run.point, run.seed),
                       accepts=lambda run, record: record.get("point") == run.point,
                       protocol_glob="points/*/*/seed-*.json")


def run_tune(settings: TuneSettings, *, log: Log = print, command: str | None = None) -> dict:
    """Train and score every grid point x seed (resuming what ``settings.out`` holds), measure
    the cost, write every output (module docstring); return the ``tune.json`` content.

    ``command``: the command line that runs this, recorded in ``tuned.toml`` and the report.
    """
    out = Path(settings.out)
    budget = parse_budget(settings.budget) if settings.budget else {}
    points = expand_grid(settings)
    # Every point is built once up front: a bad option or a batch size its member groups do
    # not divide is refused here, before any data is read or any training starts.
    for point in points:
        check_batch_size(settings, build(point_settings(settings, point), point["method"],
                                         seed=0))
    runs = [Run(key=(point_id(point), seed), point=point, seed=seed,
                name=f"{point['method']} {point_label(point)}")
            for point in points for seed in settings.seed_list]
    grid = RunGrid(runs, store=tune_store(settings), log=log, noun="grid runs",
                   list_finished=False)
    data = settings.load_data(log)
    if data.validation is None:
        raise ValueError("tune needs the validation split; set validation_fraction above 0")
    started = time.perf_counter()
    finished = grid.run(partial(compute_point, settings, data),
                        summary=partial(_run_summary, settings),
                        desc="tune", jobs=settings.parallel_runs(len(grid.todo)))
    train_seconds = time.perf_counter() - started
    rows = aggregate(points, settings, finished)
    log(f"measuring the cost of {len(points)} configurations (latency: >= "
        f"{settings.cost_seconds:g} s of calls each, {settings.cost_rounds} rounds)")
    costs = point_costs(settings, points, _first_images(data.validation, settings.cost_batch))
    for row in rows:
        row["cost"] = costs["models"][row["id"]]
    result = summarise(settings, rows, costs, budget, command)
    result["seconds"] = {"training_this_run": train_seconds,
                         "training_all_records": sum(r["train"]["seconds"]
                                                     for r in finished.values())}
    write_outputs(out, result, settings)
    return result


def compute_point(settings: TuneSettings, data, run: Run) -> tuple[dict, None]:
    """:func:`run_point` of a grid's ``run`` (module level: it pickles for the workers)."""
    return run_point(settings, run.point, run.seed, data), None


def run_point(settings: TuneSettings, point: dict, seed: int, data) -> dict:
    """Build, train and score one (point, seed) on the validation split (the task's
    :meth:`~ensemblekit.experiments.tune_settings.TuneSettings.score_point`): its JSON
    record."""
    own = point_settings(settings, point)
    model = build(own, point["method"], seed=seed)
    training = train(own, model, data, seed=seed)
    return {"point": point, "seed": seed, "settings": settings.fingerprint(),
            "model_config": model.config, "train": training,
            **settings.score_point(model, data, seed)}


def _run_summary(settings: TuneSettings, run: Run, record: dict) -> str:
    point = run.point
    return (f"{point['method']} {point_label(point)} (epochs {point['epochs']}) seed "
            f"{run.seed}: val {settings.scores_text(record['validation'])}, train "
            f"{record['train']['seconds']:.1f} s")


def aggregate(points: list[dict], settings: TuneSettings, finished: dict) -> list[dict]:
    """One row per point: validation metrics and training fit as mean/std over seeds."""
    rows = []
    for point in points:
        name = point_id(point)
        records = [finished[(name, seed)] for seed in settings.seed_list]
        row = {"method": point["method"], "label": point_label(point), "id": name,
               "options": point["options"], "epochs": point["epochs"],
               "epochs_factor": point["epochs_factor"], "seeds": len(records)}
        for key in settings.validation_metrics:
            row[key] = mean_std([r["validation"][key] for r in records])
        row["ood_auroc"] = (mean_std([r["ood"][OOD_SCORE]["auroc"] for r in records])
                            if all("ood" in r for r in records) else None)
        row["train_loss"] = mean_std([r["train"]["loss"] for r in records])
        fit = settings.fit_metric
        row[f"train_{fit}"] = mean_std([r["train"][fit] for r in records])
        row["train_seconds"] = mean_std([r["train"]["seconds"] for r in records])
        rows.append(row)
    return rows


def point_costs(settings: TuneSettings, points: list[dict], images: torch.Tensor) -> dict:
    """:func:`~ensemblekit.experiments.cost.measure_costs` of every point (built afresh at
    seed 0: cost does not depend on the weights) and of the single model, on the first
    ``cost_batch`` validation images, on the training device."""
    example = images[:settings.cost_batch]
    normalize = normalizer(settings.dataset)
    example = normalize(example) if normalize is not None else example
    models = {point_id(point): build(point_settings(settings, point), point["method"],
                                     seed=0) for point in points}
    single = reference_method()
    singles = [point_id(p) for p in points if p["method"] == single]
    reference = singles[0] if singles else single
    if not singles:
        models[reference] = build(settings, single, seed=0)
    # where the models trained (and will be deployed): the settings' device, else as training
    device = choose_device(settings.device)
    costs = measure_costs({name: model.to(device) for name, model in models.items()},
                          example.to(device), reference=reference,
                          min_seconds=settings.cost_seconds, rounds=settings.cost_rounds,
                          threads=settings.threads)
    costs["protocol"]["reference_point"] = reference
    return costs


def summarise(settings: TuneSettings, rows: list[dict], costs: dict, budget: dict,
              command: str | None) -> dict:
    """Fronts, picks and the protocol around the rows: the content of ``tune.json``."""
    fronts = {}
    for kind in COST_KINDS:
        ratios = [row["cost"][BUDGET_ENTRIES[kind]] for row in rows]
        for metric in settings.front_metrics:
            indices = pareto_front(ratios, [row[metric]["mean"] for row in rows])
            fronts[f"{kind}/{metric}"] = [rows[i]["id"] for i in indices]
    for row in rows:
        row["within_budget"] = within_budget(row["cost"], budget)
        row["fronts"] = [name for name, ids in fronts.items() if row["id"] in ids]
    picks = {}
    for method in settings.methods:
        best = pick_best(rows, method, budget)
        picks[method] = None if best is None else best["id"]
    for row in rows:
        row["picked"] = picks.get(row["method"]) == row["id"]
    return {
        "dataset": settings.dataset,
        "command": command,
        "settings": settings.to_dict(),
        "protocol": {
            "backbone": settings.backbone, "width": settings.width, "epochs": settings.epochs,
            "seeds": settings.seed_list, "validation_fraction": settings.validation_fraction,
            "selection": "lowest mean validation NLL per method (ties: lower latency), among "
                         "the points within the budget; the test set is never used",
            "ood": settings.ood_protocol(),
            "cost": costs["protocol"],
        },
        "budget": {"text": settings.budget, "limits": budget},
        "rows": rows,
        "fronts": fronts,
        "picks": picks,
        **settings.report_keys(),
    }


# -- writing ------------------------------------------------------------------------------------

def write_outputs(out: Path, result: dict, settings: TuneSettings) -> None:
    """``tune.json``, ``tune.csv``, ``tune.md``, ``pareto.png`` and ``tuned.toml`` (checked:
    the benchmark reads it back with exactly the picked options)."""
    toml = tuned_toml(result)
    atomic_write_text(out / "tuned.toml", toml)
    check_tuned_toml(out / "tuned.toml", result, settings)
    atomic_write_text(out / "tune.json", json.dumps(result, indent=1))
    atomic_write_text(out / "tune.csv", tune_csv(result["rows"], columns(result)["csv"]))
    pareto_figure(result, out / "pareto.png", BUDGET_ENTRIES)
    atomic_write_text(out / "tune.md", tune_markdown(result, BUDGET_ENTRIES))


def check_tuned_toml(path: Path, result: dict, settings: TuneSettings) -> None:
    """Raise if the benchmark, reading ``path``, would not build and train each picked point
    exactly as tune did (a guard on :func:`tuned_toml`)."""
    bench = settings.benchmark_settings.from_sources(path, {"out": settings.out})
    rows = {row["id"]: row for row in result["rows"]}
    for method, name in result["picks"].items():
        if name is None:
            continue
        point = {"method": method, "options": rows[name]["options"],
                 "epochs": rows[name]["epochs"]}
        tuned = point_settings(settings, point)
        if (bench.model_options(method, seed=0) != tuned.model_options(method, seed=0)
                or _training(bench, method) != _training(tuned, method)):
            raise RuntimeError(f"{path} does not reproduce the tuned {method} settings; "
                               "please report this as a bug")


def _training(settings, method: str) -> dict:
    """The TrainConfig of ``method`` without the keys that only say where it runs."""
    config = settings.train_config(seed=0, method=method).to_dict()
    return {key: value for key, value in config.items()
            if key not in ("threads", "device", "progress")}


def _first_images(split, count: int) -> torch.Tensor:
    """The first ``count`` images of a split (tensors or a Dataset), as one tensor."""
    if isinstance(split, tuple):
        return split[0][:count]
    return torch.stack([torch.as_tensor(split[i][0]) for i in range(min(count, len(split)))])


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

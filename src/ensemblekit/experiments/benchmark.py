"""The one-command benchmark: every method x seed, trained and evaluated under one protocol.

Each finished (method, seed) run is written at once, atomically, to
``<out>/runs/<method>/seed-<seed>.json`` (the record) and, first, ``seed-<seed>.pt`` beside it
(its per-example predictions, which the report's paired bootstrap resamples); a rerun with the
same ``--out`` reads those back and trains only what is missing -- a run whose predictions file
is missing or unreadable counts as missing -- so an interrupted benchmark loses at most the run
in progress.
A rerun whose settings would change a finished run's result is refused (naming the keys that
differ) instead of mixing two protocols in one table. When every run is there, the results are
aggregated over seeds into ``results.json``, ``results.csv``, ``report.md`` and the figures.

Each record also holds ``"calibrated"``: the "+TS" evaluation of the same trained model
(temperature fitted on the validation split, pool mode; see
:func:`~ensemblekit.experiments.calibrated.calibrated_evaluation`). After training, the
inference cost of every method is measured once per benchmark run, all models in this one
process (:func:`measure_benchmark_costs`), and written to ``cost.json``.
"""

from __future__ import annotations

import json
import pickle
import time
import zipfile
from pathlib import Path

import torch

from .. import checkpoint, plots, report
from .. import data as datasets
from ..atomic import atomic_torch_save, atomic_write_text
from .benchmark_protocol import benchmark_protocol
from .calibrated import calibrated_evaluation
from .cost import measure_costs
from .pipeline import (
    Log,
    build,
    check_batch_size,
    count_parameters,
    evaluate_run,
    evaluate_validation,
    load_experiment_data,
    train,
)
from .settings import BenchmarkSettings

#: Seconds of timed work per candidate in the benchmark's cost measurement (the benchmark
#: scripts' ">= 1 s of work"), and its rounds.
COST_MIN_SECONDS = 1.0
COST_ROUNDS = 10
#: The batch the cost is timed on: the first images of the test set.
COST_BATCH = 256
#: The name of the Masksembles model timed tiled (``predict_members``) beside the compiled one.
TILED_SUFFIX = "_tiled"


def run_path(out: str | Path, method: str, seed: int) -> Path:
    """Where the result of one (method, seed) run is kept."""
    return Path(out) / "runs" / method / f"seed-{seed}.json"


def predictions_path(out: str | Path, method: str, seed: int) -> Path:
    """Where the per-example predictions of one run are kept (beside its record)."""
    return run_path(out, method, seed).with_suffix(".pt")


def load_predictions(out: str | Path, method: str, seed: int) -> dict | None:
    """The predictions :func:`run_one` saved for a run (see
    :func:`~ensemblekit.experiments.pipeline.evaluate_run`), or None if missing or
    unreadable."""
    path = predictions_path(out, method, seed)
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile):
        return None  # a damaged file: the run is recomputed


def run_benchmark(settings: BenchmarkSettings, *, log: Log = print) -> dict:
    """Train and evaluate ``settings.methods`` x ``settings.seeds``; write everything to
    ``settings.out``; return the aggregated results (the content of ``results.json``)."""
    out = Path(settings.out)
    runs = [(method, seed) for method in settings.methods for seed in settings.seed_list]
    finished, predictions = finished_runs(settings, with_predictions=True)
    # Every model is built once up front: a batch size its member groups do not divide is
    # refused here, before any data is read or any training starts.
    for method in settings.methods:
        check_batch_size(settings, build(settings, method, seed=0))
    todo = [run for run in runs if run not in finished]
    if finished:
        names = ", ".join(f"{method}/seed-{seed}" for method, seed in runs if
                          (method, seed) in finished)
        log(f"resuming {out}: {len(finished)} of {len(runs)} runs already finished ({names}); "
            "skipping them")
    if todo:
        data = load_experiment_data(
            settings, ood=settings.ood, corruptions=settings.corruptions,
            severities=settings.severities, corrupted_dir=settings.corrupted_dir, log=log)
        started = time.perf_counter()
        for index, (method, seed) in enumerate(todo, start=1):
            record, predictions[(method, seed)] = run_one(settings, method, seed, data)
            # Predictions first: a record on disk always has its predictions beside it.
            atomic_torch_save(predictions[(method, seed)], predictions_path(out, method, seed))
            atomic_write_text(run_path(out, method, seed), json.dumps(record, indent=1))
            finished[(method, seed)] = record
            log(f"[{index}/{len(todo)}] {_summary(record)} "
                f"({time.perf_counter() - started:.0f} s elapsed)")
    records = {run: finished[run] for run in runs}
    started = time.perf_counter()
    cost = measure_benchmark_costs(settings)
    atomic_write_text(out / "cost.json", json.dumps(cost, indent=1))
    log(f"cost: {len(cost['models'])} models measured in one process "
        f"({time.perf_counter() - started:.1f} s)")
    results = report.aggregate(records, benchmark_protocol(settings, records),
                               predictions={run: predictions[run] for run in runs}, cost=cost)
    report.write_reports(out, results, records)
    plots.benchmark_figures(out / "figures", results, records)
    return results


def measure_benchmark_costs(settings: BenchmarkSettings, *,
                            min_seconds: float = COST_MIN_SECONDS,
                            rounds: int = COST_ROUNDS) -> dict:
    """Parameters, FLOPs per sample and latency of every method, as ratios to the single
    model, measured here in one process (:func:`ensemblekit.experiments.cost.measure_costs`).

    The models are freshly built with seed 0 (cost depends on the architecture, not on the
    weights: masks are fixed at build time), in eval mode, on ``settings.device`` (else CUDA
    when available, as training), with ``settings.threads`` CPU threads; the batch is the
    first :data:`COST_BATCH` test images, normalised. Masksembles is timed twice: through
    ``compile_members`` (its inference path) and tiled through ``predict_members`` (name
    ``masksembles_tiled``). The single model is the reference, built even when
    ``settings.methods`` lacks it.
    """
    # where the models trained: the settings' device, else as training picks it (as tune does)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    methods = list(dict.fromkeys(["single", *settings.methods]))
    models = {method: build(settings, method, seed=0).to(device) for method in methods}
    tiled = []
    if "masksembles" in models:
        name = "masksembles" + TILED_SUFFIX
        models[name], tiled = models["masksembles"], [name]
    test = datasets.load_dataset(settings.dataset, "test", data_dir=settings.data_dir,
                                 download=settings.download)
    # only the images timed are read (a streamed test set is never loaded whole)
    example = torch.stack([torch.as_tensor(test[index][0])
                           for index in range(min(COST_BATCH, len(test)))]).float().to(device)
    normalize = datasets.normalizer(settings.dataset)
    if normalize is not None:
        example = normalize(example)
    cost = measure_costs(models, example, reference="single", min_seconds=min_seconds,
                         rounds=rounds, threads=settings.threads, tiled=tiled)
    cost["protocol"]["models"] = "freshly built (seed 0), eval mode; latency does not depend " \
                                 "on the weights"
    return cost


def run_one(settings: BenchmarkSettings, method: str, seed: int, data) -> tuple[dict, dict]:
    """Build, train and evaluate one (method, seed) run; return its JSON-ready record and its
    per-example predictions.

    The record's ``train`` holds the last epoch's training loss and accuracy (and ``epochs``,
    ``seconds``); ``validation`` the ensemble prediction's metrics on the validation split
    (None without one), so that under-fitting shows next to the test metrics.
    """
    model = build(settings, method, seed=seed)
    checkpoint_dir = None
    if settings.checkpoints:
        checkpoint_dir = Path(settings.out) / "checkpoints" / method / f"seed-{seed}"
    training = train(settings, model, data, seed=seed, checkpoint_dir=checkpoint_dir)
    evaluation, predictions = evaluate_run(model, data, seed=seed,
                                           batch_size=settings.eval_batch_size,
                                           num_samples=settings.mc_samples)
    record = {
        "method": method,
        "seed": seed,
        "settings": settings.fingerprint(),
        "model_config": model.config,
        "params": count_parameters(model),
        "num_members": model.num_members,
        "train": training,
        "validation": evaluate_validation(model, data, seed=seed,
                                          batch_size=settings.eval_batch_size,
                                          num_samples=settings.mc_samples),
        "ood_name": data.ood_name,
        "ood_status": data.ood_status,
        **evaluation,
    }
    if data.validation is not None:
        # "+TS": the same model, temperature fitted on validation (pool), scored on test
        record["calibrated"] = calibrated_evaluation(
            model, data, seed=seed, batch_size=settings.eval_batch_size,
            num_samples=settings.mc_samples, mode="pool")
    if settings.checkpoints:
        checkpoint.save(model, Path(settings.out) / "models" / f"{method}-seed-{seed}.pt",
                        metadata={"dataset": settings.dataset, "seed": seed,
                                  "test": record["test"]})
    return record, predictions


def finished_runs(settings: BenchmarkSettings, *, with_predictions: bool = False):
    """The records already in ``settings.out`` for the requested runs:
    ``{(method, seed): record}``. With ``with_predictions``, ``(records, predictions)`` with
    ``{(method, seed): predictions}``, and a run without a readable predictions file is left
    out of both (the benchmark recomputes it: its verdicts need the predictions).

    Raises ``ValueError`` if one was computed under settings that change its result.
    """
    found, predictions = {}, {}
    expected = settings.fingerprint()
    for method in settings.methods:
        for seed in settings.seed_list:
            record = read_finished(run_path(settings.out, method, seed), expected,
                                   settings.out)
            if record is None:
                continue
            if with_predictions:
                saved = load_predictions(settings.out, method, seed)
                if saved is None:
                    continue
                predictions[(method, seed)] = saved
            found[(method, seed)] = record
    return (found, predictions) if with_predictions else found


def read_finished(path: Path, expected: dict, out) -> dict | None:
    """The finished record at ``path`` (None if absent or unreadable: it is recomputed).

    Raises ``ValueError`` naming every differing key if its ``"settings"`` differ from
    ``expected`` (a fingerprint), so that one output folder never mixes two protocols.
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        recorded = record["settings"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None  # not a finished run's record: it is recomputed and overwritten
    differing = sorted(key for key in expected.keys() | recorded.keys()
                       if expected.get(key) != recorded.get(key))
    if differing:
        details = "; ".join(f"{key}: {recorded.get(key)!r} there, "
                            f"{expected.get(key)!r} now" for key in differing)
        raise ValueError(f"{out} holds finished runs with other settings ({details}); "
                         "rerun with those settings to resume, or pass a new --out")
    return record


def _summary(record: dict) -> str:
    test = record["test"]
    parts = [f"{record['method']} seed {record['seed']}: acc {test['accuracy']:.3f}",
             f"NLL {test['nll']:.3f}", f"ECE {test['ece']:.3f}"]
    if "shift_mean" in record:
        shift_ece = [metrics["ece"] for metrics in record["shift_mean"].values()]
        parts.append(f"shift ECE {sum(shift_ece) / len(shift_ece):.3f}")
    parts.append(f"train {record['train']['seconds']:.1f} s")
    return ", ".join(parts)

"""One inference pass per split: a benchmark run pushes the test set, the validation split, the
OOD set and each corrupted set through a trained model once, and the record's metrics, its
"+TS" metrics and the saved predictions all come from those outputs."""

from __future__ import annotations

import functools
import json
import math

from ensemblekit.data import load_dataset
from ensemblekit.experiments import BenchmarkSettings, benchmark, run_benchmark
from ensemblekit.experiments.benchmark import run_path

METHODS = ["single", "masksembles"]
KINDS = ["gaussian_noise", "fog"]
SEVERITIES = [1, 5]
BATCH = 200


def test_a_benchmark_run_predicts_each_split_once(tmp_path, monkeypatch):
    settings = BenchmarkSettings.from_sources(overrides={
        "methods": METHODS, "seeds": 1, "epochs": 1, "corruptions": KINDS,
        "severities": SEVERITIES, "members": 2, "threads": 1, "eval_batch_size": BATCH,
        "out": str(tmp_path)})
    forwards = []  # per model built: [(training mode, rows)] of every backbone forward
    real_build = benchmark.build

    def counting_build(settings, method, *, seed, **options):
        model = real_build(settings, method, seed=seed, **options)
        calls = []
        model.backbone.register_forward_pre_hook(
            lambda module, inputs: calls.append((module.training, inputs[0].shape[0])))
        forwards.append((model.num_members, calls))
        return model

    monkeypatch.setattr(benchmark, "build", counting_build)
    # the cost measurement builds fresh models and times them: keep it short
    monkeypatch.setattr(benchmark, "measure_benchmark_costs", functools.partial(
        benchmark.measure_benchmark_costs, min_seconds=0.0, rounds=1))
    run_benchmark(settings, log=lambda message: None)

    trained = [(members, calls) for members, calls in forwards
               if any(training for training, _ in calls)]
    assert len(trained) == len(METHODS)
    record = json.loads(run_path(tmp_path, "single", 0).read_text())
    test = len(load_dataset(settings.dataset, "test"))
    validation = record["calibrated"]["calibration"]["n_validation"]
    ood = len(load_dataset(record["ood_name"], "test"))
    # the splits in rows, and the batches a single pass over each takes
    splits = [test, validation, ood] + [len(SEVERITIES) * test] * len(KINDS)
    for members, calls in trained:
        inference = [rows for training, rows in calls if not training]
        assert sum(inference) == members * sum(splits)  # every row once, no split twice
        assert len(inference) == sum(math.ceil(rows / BATCH) for rows in splits)

"""A method is one registry entry: a copy of the single model registered at run time under
another name runs through benchmark, tune, diversity and their reports with no other file
changed -- experiments, report, plots and the CLI know methods only through the registry."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest

from ensemblekit.experiments import (
    BenchmarkSettings,
    DiversitySettings,
    TuneSettings,
    benchmark,
    run_benchmark,
    run_diversity,
    run_tune,
)
from ensemblekit.methods import (
    available_methods,
    method_entry,
    register_method,
    unregister_method,
)
from ensemblekit.methods.single import SingleModel
from ensemblekit.models.factory import LayerFactory

NAME, LABEL = "throwaway", "Throwaway copy"


class ThrowawayModel(SingleModel):
    method = NAME


@pytest.fixture
def throwaway():
    entry = method_entry("single")
    # every fact of the single model's entry but its name, label and role (one reference)
    facts = {field.name: getattr(entry, field.name) for field in dataclasses.fields(entry)
             if field.name not in ("name", "builder", "label", "role")}

    @register_method(NAME, label=LABEL, **facts)
    def build(make_backbone, *, seed):
        return ThrowawayModel(make_backbone(LayerFactory(), seed))

    try:
        yield NAME
    finally:
        unregister_method(NAME)
    assert NAME not in available_methods()


def quiet(message):
    pass


def test_a_method_registered_at_run_time_runs_through_every_experiment(
        throwaway, tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "measure_benchmark_costs", functools.partial(
        benchmark.measure_benchmark_costs, min_seconds=0.0, rounds=1))
    common = {"epochs": 1, "threads": 1, "seeds": 1}
    shift = {"corruptions": ["fog"], "severities": [3]}

    results = run_benchmark(BenchmarkSettings.from_sources(overrides={
        **common, **shift, "methods": ["single", throwaway], "out": str(tmp_path / "b")}),
        log=quiet)
    assert set(results["methods"]) == {"single", throwaway}
    assert results["methods"][throwaway]["test"]["accuracy"]["mean"] > 0.1
    report = (tmp_path / "b" / "report.md").read_text()
    assert LABEL in report
    assert json.loads((tmp_path / "b" / "results.json").read_text())["methods"][throwaway]
    assert (tmp_path / "b" / "figures").is_dir()

    tuned = run_tune(TuneSettings.from_sources(overrides={
        **common, "methods": [throwaway], "cost_seconds": 0.0, "cost_rounds": 1,
        "cost_batch": 16, "out": str(tmp_path / "t")}), log=quiet)
    assert throwaway in tuned["picks"]
    assert throwaway in (tmp_path / "t" / "tune.md").read_text()  # tune tables name methods

    study = run_diversity(DiversitySettings.from_sources(overrides={
        **common, **shift, "methods": ["single", throwaway, "deep_ensemble"],
        "cka_samples": 50, "out": str(tmp_path / "d")}), log=quiet)
    assert throwaway in study["variants"]
    assert LABEL in (tmp_path / "d" / "diversity.md").read_text()

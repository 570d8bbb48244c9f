"""The papers' experiments, one module each, on top of the library.

- :mod:`~ensemblekit.experiments.benchmark`: every method x seed under one protocol (clean,
  corruptions x severities, OOD), resumable; results, report and figures.
- :mod:`~ensemblekit.experiments.toy`: predictive-entropy maps on a 2D problem.
- :mod:`~ensemblekit.experiments.diversity`: member similarity in function and parameter space.
- :mod:`~ensemblekit.experiments.sweep`: Masksembles over a grid of scale x number of masks.
- :mod:`~ensemblekit.experiments.single_run`: train one model, evaluate a checkpoint, write
  corrupted test sets.
- :mod:`~ensemblekit.experiments.tune`: each method's own setting chosen on the validation
  split, beside its cost (:mod:`~ensemblekit.experiments.cost`); writes a benchmark config.
- :mod:`~ensemblekit.experiments.settings`: defaults, TOML configs, command-line overrides.
"""

from .benchmark import run_benchmark
from .diversity import run_diversity
from .settings import (
    BenchmarkSettings,
    DiversitySettings,
    SweepSettings,
    ToySettings,
    TrainSettings,
    TuneSettings,
    load_config,
)
from .single_run import run_corrupt, run_evaluate, run_train
from .sweep import run_sweep
from .toy import run_toy
from .tune import run_tune

__all__ = [
    "BenchmarkSettings",
    "DiversitySettings",
    "SweepSettings",
    "ToySettings",
    "TrainSettings",
    "TuneSettings",
    "load_config",
    "run_benchmark",
    "run_corrupt",
    "run_diversity",
    "run_evaluate",
    "run_sweep",
    "run_toy",
    "run_train",
    "run_tune",
]

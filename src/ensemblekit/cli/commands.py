"""One handler per subcommand: the parsed flags as Settings, the experiment run, and what it
wrote printed. Each returns the exit status; a user error raises ``ValueError``."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from ..experiments.benchmark import BenchmarkSettings, run_benchmark
from ..experiments.config import merge_method_options
from ..experiments.diversity import run_diversity
from ..experiments.diversity_settings import DiversitySettings
from ..experiments.regression_benchmark import (
    RegressionBenchmarkSettings,
    run_regression_benchmark,
)
from ..experiments.regression_toy import RegressionToySettings, run_regression_toy
from ..experiments.single_run import TrainSettings, run_corrupt, run_evaluate, run_train
from ..experiments.sweep import SweepSettings, run_sweep
from ..experiments.toy import ToySettings, run_toy
from ..experiments.tune import expand_grid, run_tune
from ..experiments.tune_settings import RegressionTuneSettings, TuneSettings
from ..report import regression_summary_table, summary_table
from ..report.diversity import diversity_table
from .settings import flatten, settings_from_args


def benchmark(args) -> int:
    if args.task == "regression":
        return _regression_benchmark(args)
    settings = settings_from_args(
        args, BenchmarkSettings, ("methods", "seeds", "corruptions", "severities", "ood",
                                  "mc_samples", "corrupted_dir", "checkpoints", "jobs"))
    started = time.perf_counter()
    print(f"benchmark: {', '.join(settings.methods)} x {settings.seeds} seed(s) on "
          f"{settings.dataset} ({settings.backbone}, {settings.epochs} epochs); "
          f"{len(settings.corruptions)} corruptions x {len(settings.severities)} severities; "
          f"OOD: {settings.ood}; writing to {settings.out}", flush=True)
    results = run_benchmark(settings, log=_log)
    return _benchmark_written(summary_table(results), settings.out, started)


def _benchmark_written(table: str, out, started: float) -> int:
    """Print a finished benchmark's table and where its files went."""
    print()
    print(table)
    out = Path(out)
    print(f"\nwrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'report.md'} and "
          f"{out / 'figures'}/ in {time.perf_counter() - started:.0f} s")
    return 0


def _regression_benchmark(args) -> int:
    settings = settings_from_args(args, RegressionBenchmarkSettings,
                                  ("methods", "seeds", "mc_samples", "splits", "jobs"))
    started = time.perf_counter()
    print(f"benchmark (regression): {', '.join(settings.methods)} x {settings.seeds} seed(s) "
          f"on {settings.dataset}; writing to {settings.out}", flush=True)
    results = run_regression_benchmark(settings, log=_log)
    return _benchmark_written(regression_summary_table(results), settings.out, started)


def tune(args) -> int:
    args.grid = None if args.grid is None else _merged(args.grid, merge_method_options)
    tune_settings = RegressionTuneSettings if args.task == "regression" else TuneSettings
    settings = settings_from_args(args, tune_settings,
                                  ("methods", "seeds", "grid", "budget", "ood", "jobs"))
    points = len(expand_grid(settings))
    started = time.perf_counter()
    print(f"tune: {points} grid points x {settings.seeds} seed(s) on {settings.dataset} "
          f"({settings.backbone}, {settings.epochs} epochs), scored on the validation split; "
          f"writing to {settings.out}", flush=True)
    result = run_tune(settings, log=_log, command=shlex.join(["ensemblekit", *args.argv]))
    task = " --task regression" if settings.task == "regression" else ""
    out = Path(settings.out)
    print("\npicked (lowest validation NLL per method"
          + (f", within {settings.budget}" if settings.budget else "") + "):")
    rows = {row["id"]: row for row in result["rows"]}
    for method, slug in result["picks"].items():
        if slug is None:
            print(f"  {method}: none within the budget")
            continue
        row = rows[slug]
        print(f"  {method}: {row['label']} (epochs {row['epochs']}): val NLL "
              f"{row['nll']['mean']:.4f}, latency {row['cost']['latency_ratio']:.2f}x single")
    print(f"\nwrote {out / 'tune.md'}, {out / 'tune.json'}, {out / 'tune.csv'}, "
          f"{out / 'pareto.png'} and {out / 'tuned.toml'} in {time.perf_counter() - started:.0f}"
          f" s; run `ensemblekit benchmark{task} --config {out / 'tuned.toml'}`")
    return 0


def _merged(tables: list[dict], merge) -> dict:
    merged: dict = {}
    for table in tables:
        merged = merge(merged, table)
    return merged


def toy(args) -> int:
    if args.task == "regression":
        settings = settings_from_args(args, RegressionToySettings,
                                      ("scales", "seed", "datasets"))
        run_regression_toy(settings, log=_log)
        out = Path(settings.out)
        print(f"wrote {out / 'toy_regression.png'} and {out / 'toy_regression.json'}")
        return 0
    settings = settings_from_args(args, ToySettings, ("scales", "seed", "resolution"))
    run_toy(settings, log=_log)
    print(f"wrote {Path(settings.out) / 'toy_entropy.png'} and {Path(settings.out) / 'toy.json'}")
    return 0


def diversity(args) -> int:
    settings = settings_from_args(args, DiversitySettings, ("methods", "seeds", "corruptions",
                                                            "severities", "ood", "jobs"))
    results = run_diversity(settings, log=_log)
    print()
    print(diversity_table(results))
    out = Path(settings.out)
    print(f"\nwrote {out / 'diversity.json'}, {out / 'diversity.md'} and "
          f"{', '.join(results['figures'])} in {results['seconds']:.0f} s")
    return 0


def sweep(args) -> int:
    settings = settings_from_args(args, SweepSettings, ("scales", "ns", "references", "seeds",
                                                        "corruptions", "severities", "ood",
                                                        "jobs"))
    run_sweep(settings, log=_log)
    out = Path(settings.out)
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'} and {out / 'sweep.png'}")
    return 0


def train(args) -> int:
    settings = settings_from_args(args, TrainSettings, ("method", "seed", "resume"))
    run_train(settings, log=_log)
    return 0


def evaluate(args) -> int:
    run_evaluate(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir,
                 corruptions=flatten(args.corruptions) or "all",
                 severities=args.severities or (1, 2, 3, 4, 5), ood=args.ood, out=args.out,
                 batch_size=args.batch_size, mc_samples=args.mc_samples,
                 calibrate=args.calibrate, log=_log)
    return 0


def corrupt(args) -> int:
    run_corrupt(args.dataset, data_dir=args.data_dir,
                corruptions=flatten(args.corruptions) or "all",
                severities=args.severities or (1, 2, 3, 4, 5), out=args.out, index=args.index,
                seed=args.seed, log=_log)
    return 0


def _log(message: str) -> None:
    print(message, flush=True)

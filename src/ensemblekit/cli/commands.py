"""One handler per subcommand: the parsed flags as Settings, the experiment run, and what it
wrote printed. Each returns the exit status; a user error raises ``ValueError``."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from ..experiments.config import merge_method_options
from ..experiments.diversity import run_diversity
from ..experiments.diversity_settings import DiversitySettings
from ..experiments.single_run import TrainSettings, run_corrupt, run_evaluate, run_train
from ..experiments.sweep import SweepSettings, run_sweep
from ..experiments.tasks import DEFAULT_TASK, TASKS
from ..experiments.tune import expand_grid, run_tune
from ..report.diversity import diversity_table
from .settings import flatten, settings_from_args


def benchmark(args) -> int:
    # Each task's settings read the flags among these that they have (settings_from_args
    # refuses a given flag that the chosen task does not read).
    task = TASKS[args.task]
    settings = settings_from_args(
        args, task.benchmark, ("methods", "seeds", "corruptions", "severities", "ood",
                               "mc_samples", "corrupted_dir", "checkpoints", "splits", "jobs"))
    started = time.perf_counter()
    print(settings.plan(), flush=True)
    results = task.run_benchmark(settings, log=_log)
    print()
    print(task.summary_table(results))
    out = Path(settings.out)
    print(f"\nwrote {out / 'results.json'}, {out / 'results.csv'}, {out / 'report.md'} and "
          f"{out / 'figures'}/ in {time.perf_counter() - started:.0f} s")
    return 0


def tune(args) -> int:
    args.grid = None if args.grid is None else _merged(args.grid, merge_method_options)
    settings = settings_from_args(args, TASKS[args.task].tune,
                                  ("methods", "seeds", "grid", "budget", "ood", "jobs"))
    points = len(expand_grid(settings))
    started = time.perf_counter()
    print(f"tune: {points} grid points x {settings.seeds} seed(s) on {settings.dataset} "
          f"({settings.backbone}, {settings.epochs} epochs), scored on the validation split; "
          f"writing to {settings.out}", flush=True)
    result = run_tune(settings, log=_log, command=shlex.join(["ensemblekit", *args.argv]))
    task = "" if settings.task == DEFAULT_TASK else f" --task {settings.task}"
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
    task = TASKS[args.task]
    settings = settings_from_args(args, task.toy, ("scales", "seed", "resolution", "datasets"))
    task.run_toy(settings, log=_log)
    out = Path(settings.out)
    print(f"wrote {out / settings.figure_file} and {out / settings.json_file}")
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

"""The ``ensemblekit`` command line: argument parsing only; the work is in
:mod:`ensemblekit.experiments`.

Every training subcommand reads its settings from, lowest precedence first: defaults, the
dataset's recipe, ``--config FILE`` (TOML), then the flags given. User errors (an unknown name,
an invalid combination, missing data) print one line naming the fix and exit with status 2,
before any training starts; an interrupted run exits with 130 and keeps what it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

from ._validation import check_int
from .experiments.benchmark import BenchmarkSettings, run_benchmark
from .experiments.config import merge_method_options
from .experiments.diversity import run_diversity
from .experiments.diversity_settings import DiversitySettings
from .experiments.regression_benchmark import (
    RegressionBenchmarkSettings,
    run_regression_benchmark,
)
from .experiments.regression_toy import RegressionToySettings, run_regression_toy
from .experiments.single_run import TrainSettings, run_corrupt, run_evaluate, run_train
from .experiments.sweep import SweepSettings, run_sweep
from .experiments.toy import ToySettings, run_toy
from .experiments.tune import expand_grid, run_tune
from .experiments.tune_settings import RegressionTuneSettings, TuneSettings
from .report import regression_summary_table, summary_table
from .report.diversity import diversity_table
from .train import MAX_THREADS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("ensemblekit: error: a COMMAND is required (benchmark, tune, toy, diversity, sweep, "
              "train, evaluate or corrupt); `ensemblekit --help` describes them", file=sys.stderr)
        return EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by tune's outputs
    try:
        return args.handler(args) or 0
    except (ValueError, FileNotFoundError) as error:
        print(f"ensemblekit {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        message = f"\nensemblekit {args.command}: interrupted"
        if args.command in ("benchmark", "tune") and getattr(args, "out", None):
            message += (f"; finished runs are kept under {args.out}: rerun the same command "
                        "to resume")
        elif args.command == "train" and getattr(args, "out", None):
            message += (f"; the last finished epoch is in {args.out}/checkpoints/last.pt: "
                        "rerun with --resume to continue")
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ensemblekit",
        description="Cheap ensemble-like uncertainty (Masksembles and the methods around it): "
                    "training, evaluation under shift and OOD, and the papers' experiments.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser(
        "benchmark", help="train and evaluate every method over several seeds; write "
                          "results.json/.csv, report.md and figures",
        description="Train and evaluate every method over several seeds under one protocol "
                    "(clean, 15 corruptions x 5 severities, OOD). Runs offline on the embedded "
                    "digits by default. Finished runs are kept; rerunning with the same --out "
                    "resumes.")
    _common(bench, default_out="runs/benchmark-<dataset>")
    _task_flag(bench, "diabetes, or --dataset uci-<name>: the published UCI protocol")
    bench.add_argument("--splits", nargs="+", type=int, help="regression on a uci-<name> "
                       "set: the split indices to run (default: all of n_splits.txt)")
    bench.add_argument("--methods", nargs="+", type=_names, help="methods to run (default: "
                       "single mc_dropout masksembles batchensemble deep_ensemble)")
    bench.add_argument("--seeds", type=int, help="number of seeds, 0..N-1 (default 3)")
    _shift_flags(bench)
    bench.add_argument("--ood", help="OOD test set: a dataset name, 'auto' (the dataset's "
                       "pair; default) or 'none'")
    bench.add_argument("--mc-samples", dest="mc_samples", type=int,
                       help="MC-Dropout stochastic passes at test time (default: --members)")
    bench.add_argument("--corrupted-dir", dest="corrupted_dir",
                       help="a CIFAR-10-C-layout folder to evaluate shift on (e.g. the official "
                            "CIFAR-10-C); default: generate into OUT/corrupted")
    bench.add_argument("--checkpoints", action="store_true", default=None,
                       help="keep per-epoch checkpoints (resume mid-run) and save every model")
    bench.set_defaults(handler=_benchmark)

    tune = sub.add_parser(
        "tune", help="choose each method's own setting on the validation split, beside its "
                     "cost; write the grid, Pareto fronts and a benchmark config",
        description="Train a small grid of each method's own knob (Masksembles n x scale x "
                    "placement x widen, MC-Dropout p x placement, BatchEnsemble init; single "
                    "and Deep Ensembles as references), score each on the validation split "
                    "(never the test set) beside its measured cost (parameters, FLOPs, "
                    "latency as ratios to the single model), and write the grid table, the "
                    "Pareto fronts and OUT/tuned.toml: the best point per method by "
                    "validation NLL, for `ensemblekit benchmark --config`. Finished points are "
                    "kept; rerunning with the same --out resumes.")
    _common(tune, default_out="runs/tune-<dataset>")
    _task_flag(tune, "diabetes; scored by the validation NLL of the members' mixture")
    tune.add_argument("--methods", nargs="+", type=_names, help="methods to tune (default: "
                      "all five; single and deep_ensemble are reference points)")
    tune.add_argument("--seeds", type=int, help="number of seeds per point (default 2)")
    tune.add_argument("--grid", action="append", type=_grid_entry, metavar="METHOD.KEY=V1,V2",
                      help="replace one list of the default grid, e.g. masksembles.scale=2,3 "
                           "or masksembles.epochs_factor=1,2 (repeatable)")
    tune.add_argument("--budget", help="pick only within it: comma-separated KIND<=RATIO, "
                                       "KIND latency, params or flops, e.g. latency<=1.3x")
    tune.add_argument("--ood", help="OOD set scored against the validation split: a dataset "
                                    "name, 'auto' (default) or 'none'")
    tune.set_defaults(handler=_tune)

    toy = sub.add_parser(
        "toy", help="predictive-entropy maps on a 2D problem, single model to ensemble",
        description="Masksembles paper, Example 1: a row of predictive-entropy maps on a 2D "
                    "two-class problem: single model, MC-Dropout, Masksembles at increasing "
                    "scale, Deep Ensemble.")
    _common(toy, default_out="runs/toy-<dataset>", default_dataset="toy_moons")
    _task_flag(toy, "mean +- 2 sigma, epistemic and aleatoric apart, on 1-D toys")
    toy.add_argument("--datasets", nargs="+", type=_names, help="regression: the 1-D toys, "
                     "one row each (default toy_cubic toy_in_between)")
    toy.add_argument("--scales", nargs="+", type=float,
                     help="Masksembles scales, one panel each (default 1.5 2 4 8)")
    toy.add_argument("--seed", type=int, help="seed of every model (default 0)")
    toy.add_argument("--resolution", type=int, help="grid points per axis (default 120)")
    toy.set_defaults(handler=_toy)

    diversity = sub.add_parser(
        "diversity", help="how alike the members are: function and parameter space",
        description="Member similarity study (\"Is BatchEnsemble a single model?\"): weight "
                    "cosine at initialisation and trained (overall and per layer), linear CKA "
                    "of hidden representations, and disagreement, KL, JS and mutual "
                    "information on clean, corrupted and OOD data, for each method and the "
                    "BatchEnsemble init controls; verdicts on the paper's two claims.")
    _common(diversity, default_out="runs/diversity-<dataset>")
    diversity.add_argument("--methods", nargs="+", type=_names, help="methods (default: "
                           "single mc_dropout masksembles batchensemble deep_ensemble)")
    diversity.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    _shift_flags(diversity)
    diversity.add_argument("--ood", help="OOD set: a dataset name, 'auto' (default) or 'none'")
    diversity.set_defaults(handler=_diversity)

    sweep = sub.add_parser(
        "sweep", help="Masksembles over a grid of scale and number of masks, plotted",
        description="The Masksembles transition: metrics over a grid of scale x n, with "
                    "reference methods as horizontal lines.")
    _common(sweep, default_out="runs/sweep-<dataset>")
    sweep.add_argument("--scales", nargs="+", type=float,
                       help="scales (default 1 1.5 2 3 4 6)")
    sweep.add_argument("--ns", nargs="+", type=int, help="numbers of masks (default 2 4 8)")
    sweep.add_argument("--references", nargs="+", type=_names,
                       help="reference methods (default single mc_dropout deep_ensemble; "
                            "'none' for none)")
    sweep.add_argument("--seeds", type=int, help="number of seeds (default 1)")
    _shift_flags(sweep)
    sweep.add_argument("--ood", help="OOD set: a dataset name, 'auto' (default) or 'none'")
    sweep.set_defaults(handler=_sweep)

    train = sub.add_parser("train", help="train one model and save a checkpoint",
                           description="Train one model; save OUT/model.pt and OUT/train.json "
                                       "(and OUT/checkpoints/last.pt after every epoch).")
    _common(train, default_out="runs/train-<dataset>")
    train.add_argument("--method", help="method (default masksembles)")
    train.add_argument("--seed", type=int, help="seed (default 0)")
    train.add_argument("--resume", action="store_true", default=None,
                       help="continue from OUT/checkpoints/last.pt (written after every epoch)")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser(
        "evaluate", help="evaluate a checkpoint: clean, corruptions, OOD",
        description="Evaluate a saved model under the benchmark's protocol.")
    evaluate.add_argument("checkpoint", help="a checkpoint written by `ensemblekit train` or "
                                             "ensemblekit.checkpoint.save")
    evaluate.add_argument("--dataset", help="dataset (default: the one recorded in the "
                                            "checkpoint)")
    evaluate.add_argument("--data-dir", dest="data_dir", help="folder holding the datasets")
    _shift_flags(evaluate)
    evaluate.add_argument("--ood", default="auto",
                          help="OOD set: a name, 'auto' (default) or 'none'")
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, default=500)
    evaluate.add_argument("--mc-samples", dest="mc_samples", type=int)
    evaluate.add_argument("--out", help="JSON file (default: evaluation.json beside the "
                                        "checkpoint)")
    evaluate.add_argument("--calibrate", action="store_true",
                          help="also report the metrics after temperature scaling fitted on "
                               "the validation split (held out of the training split)")
    evaluate.set_defaults(handler=_evaluate)

    corrupt = sub.add_parser(
        "corrupt", help="write a test set under every corruption and a preview PNG",
        description="Write the test set of DATASET under each corruption and severity in the "
                    "CIFAR-10-C layout (<kind>.npy, labels.npy) and a kind x severity preview.")
    corrupt.add_argument("--dataset", default="digits", help="image dataset (default digits)")
    corrupt.add_argument("--data-dir", dest="data_dir", help="folder holding the datasets")
    _shift_flags(corrupt)
    corrupt.add_argument("--index", type=int, default=0, help="test image to preview")
    corrupt.add_argument("--seed", type=int, default=0)
    corrupt.add_argument("--out", help="folder (default runs/corrupted-<dataset>)")
    corrupt.set_defaults(handler=_corrupt)
    return parser


def _common(parser, *, default_out: str, default_dataset: str = "digits") -> None:
    """Flags every training subcommand shares; all default to None (= config or recipe)."""
    parser.add_argument("--config", help="TOML file of settings (see configs/); flags given "
                                         "here override it")
    parser.add_argument("--dataset", help=f"dataset (default {default_dataset})")
    parser.add_argument("--data-dir", dest="data_dir",
                        help="folder holding the datasets (default $ENSEMBLEKIT_DATA or ./data)")
    parser.add_argument("--download", action="store_true", default=None,
                        help="download missing datasets first (needs internet)")
    parser.add_argument("--backbone", help="backbone (default: the dataset's recipe, e.g. "
                                           "lenet for digits)")
    parser.add_argument("--width", type=float, help="backbone width multiplier")
    parser.add_argument("--epochs", type=int, help="training epochs")
    parser.add_argument("--members", type=int, help="members per method (default 4)")
    parser.add_argument("--scale", type=float, help="Masksembles scale >= 1 (default 2)")
    parser.add_argument("--dropout", type=float, help="MC-Dropout rate p (default 0.1)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="training batch size")
    parser.add_argument("--lr", type=float, help="learning rate")
    parser.add_argument("--validation-fraction", dest="validation_fraction", type=float,
                        help="part of the training split held out for validation, the same "
                             "for every method and seed (default: digits 0.2, others 0.1; 0: "
                             "none)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="show a progress bar per training run")
    parser.add_argument("--out", help=f"output folder (default {default_out})")


def _task_flag(parser, regression: str) -> None:
    parser.add_argument("--task", choices=("classification", "regression"),
                        default="classification", help=f"default classification; {regression}")


def _shift_flags(parser) -> None:
    parser.add_argument("--corruptions", nargs="+", type=_names,
                        help="corruption kinds, 'all' (the 15 CIFAR-10-C kinds) or 'none'")
    parser.add_argument("--severities", nargs="+", type=int, help="severities in 1..5")


def _names(text: str) -> list[str]:
    """A flag value: one name or comma-separated names."""
    return [name for name in text.split(",") if name]


def _grid_entry(text: str) -> dict:
    """``--grid masksembles.scale=2,3`` -> ``{"masksembles": {"scale": [2, 3]}}``: numbers,
    true / false, or names."""
    target, sep, values = text.partition("=")
    method, dot, key = target.partition(".")
    if not (sep and dot and method and key and values):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not METHOD.KEY=V1,V2 (e.g. masksembles.scale=2,3)")
    return {method: {key: [_grid_value(item) for item in values.split(",") if item]}}


def _grid_value(text: str):
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _flatten(values):
    if values is None:
        return None
    flat = [name for group in values for name in group]
    return flat[0] if len(flat) == 1 and flat[0] in ("all", "none") else flat


def _overrides(args, keys: tuple[str, ...]) -> dict:
    """The settings given on the command line (None: not given)."""
    values = {key: getattr(args, key, None) for key in keys}
    for key in ("methods", "corruptions", "references", "datasets"):
        if key in values:
            values[key] = _flatten(values[key])
    if values.get("references") == "none":
        values["references"] = []
    train = {key: getattr(args, key) for key in ("batch_size", "lr")
             if getattr(args, key, None) is not None}
    values["train"] = train or None
    return values


_COMMON_KEYS = ("dataset", "data_dir", "download", "backbone", "width", "epochs", "members",
                "scale", "dropout", "device", "threads", "progress", "out",
                "validation_fraction")


#: Flags that one task's experiment reads and the other's does not.
_TASK_FLAGS = ("splits", "datasets", "resolution", "corruptions", "severities", "ood",
               "corrupted_dir", "checkpoints")


def _settings(args, settings_class, extra: tuple[str, ...]):
    keys = {field.name for field in dataclasses.fields(settings_class)}
    for flag in _TASK_FLAGS:
        if getattr(args, flag, None) is not None and flag not in keys:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to `ensemblekit "
                             f"{args.command} --task {settings_class.task}`; drop it")
    settings = settings_class.from_sources(args.config, _overrides(args, _COMMON_KEYS + extra))
    args.out = settings.out  # for the message of an interrupted run
    if settings.threads is not None:
        import torch

        # 100000 threads exhaust memory (stacks) and break the next import: refuse it here.
        torch.set_num_threads(check_int("threads", settings.threads, minimum=1,
                                        maximum=MAX_THREADS))
    return settings


def _benchmark(args) -> int:
    if args.task == "regression":
        return _regression_benchmark(args)
    settings = _settings(args, BenchmarkSettings,
                         ("methods", "seeds", "corruptions", "severities", "ood", "mc_samples",
                          "corrupted_dir", "checkpoints"))
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
    settings = _settings(args, RegressionBenchmarkSettings,
                         ("methods", "seeds", "mc_samples", "splits"))
    started = time.perf_counter()
    print(f"benchmark (regression): {', '.join(settings.methods)} x {settings.seeds} seed(s) "
          f"on {settings.dataset}; writing to {settings.out}", flush=True)
    results = run_regression_benchmark(settings, log=_log)
    return _benchmark_written(regression_summary_table(results), settings.out, started)


def _tune(args) -> int:
    args.grid = None if args.grid is None else _merged(args.grid, merge_method_options)
    tune_settings = RegressionTuneSettings if args.task == "regression" else TuneSettings
    settings = _settings(args, tune_settings, ("methods", "seeds", "grid", "budget", "ood"))
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


def _toy(args) -> int:
    if args.task == "regression":
        settings = _settings(args, RegressionToySettings, ("scales", "seed", "datasets"))
        run_regression_toy(settings, log=_log)
        out = Path(settings.out)
        print(f"wrote {out / 'toy_regression.png'} and {out / 'toy_regression.json'}")
        return 0
    settings = _settings(args, ToySettings, ("scales", "seed", "resolution"))
    run_toy(settings, log=_log)
    print(f"wrote {Path(settings.out) / 'toy_entropy.png'} and {Path(settings.out) / 'toy.json'}")
    return 0


def _diversity(args) -> int:
    settings = _settings(args, DiversitySettings, ("methods", "seeds", "corruptions",
                                                   "severities", "ood"))
    results = run_diversity(settings, log=_log)
    print()
    print(diversity_table(results))
    out = Path(settings.out)
    print(f"\nwrote {out / 'diversity.json'}, {out / 'diversity.md'} and "
          f"{', '.join(results['figures'])} in {results['seconds']:.0f} s")
    return 0


def _sweep(args) -> int:
    settings = _settings(args, SweepSettings, ("scales", "ns", "references", "seeds",
                                               "corruptions", "severities", "ood"))
    run_sweep(settings, log=_log)
    out = Path(settings.out)
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'} and {out / 'sweep.png'}")
    return 0


def _train(args) -> int:
    settings = _settings(args, TrainSettings, ("method", "seed", "resume"))
    run_train(settings, log=_log)
    return 0


def _evaluate(args) -> int:
    run_evaluate(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir,
                 corruptions=_flatten(args.corruptions) or "all",
                 severities=args.severities or (1, 2, 3, 4, 5), ood=args.ood, out=args.out,
                 batch_size=args.batch_size, mc_samples=args.mc_samples,
                 calibrate=args.calibrate, log=_log)
    return 0


def _corrupt(args) -> int:
    run_corrupt(args.dataset, data_dir=args.data_dir,
                corruptions=_flatten(args.corruptions) or "all",
                severities=args.severities or (1, 2, 3, 4, 5), out=args.out, index=args.index,
                seed=args.seed, log=_log)
    return 0


def _log(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())

"""The ``ensemblekit`` argument parser: every subcommand and its flags, the flag groups the
subcommands share, and the types that read a flag's value. Each subcommand's handler is in
:mod:`.commands`."""

from __future__ import annotations

import argparse

from ..experiments.tasks import DEFAULT_TASK, TASKS
from . import commands


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand's parser; each sets ``handler``, its function in :mod:`.commands`."""
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
    _jobs_flag(bench)
    bench.set_defaults(handler=commands.benchmark)

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
    _jobs_flag(tune)
    tune.set_defaults(handler=commands.tune)

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
    toy.set_defaults(handler=commands.toy)

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
    _jobs_flag(diversity)
    diversity.set_defaults(handler=commands.diversity)

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
    _jobs_flag(sweep)
    sweep.set_defaults(handler=commands.sweep)

    train = sub.add_parser("train", help="train one model and save a checkpoint",
                           description="Train one model; save OUT/model.pt and OUT/train.json "
                                       "(and OUT/checkpoints/last.pt after every epoch).")
    _common(train, default_out="runs/train-<dataset>")
    train.add_argument("--method", help="method (default masksembles)")
    train.add_argument("--seed", type=int, help="seed (default 0)")
    train.add_argument("--resume", action="store_true", default=None,
                       help="continue from OUT/checkpoints/last.pt (written after every epoch)")
    train.set_defaults(handler=commands.train)

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
    evaluate.set_defaults(handler=commands.evaluate)

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
    corrupt.set_defaults(handler=commands.corrupt)
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


def _jobs_flag(parser) -> None:
    parser.add_argument("--jobs", type=_jobs, metavar="N|auto",
                        help="runs trained at once, each in its own process (default auto: "
                             "as many as the CPU cores hold at --threads threads each; 1 on "
                             "CUDA); the results do not depend on it")


def _jobs(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _task_flag(parser, regression: str) -> None:
    parser.add_argument("--task", choices=tuple(TASKS), default=DEFAULT_TASK,
                        help=f"default {DEFAULT_TASK}; {regression}")


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

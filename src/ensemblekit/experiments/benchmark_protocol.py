"""The benchmark's protocol: what it ran, from its settings and records, as the report reads it
(``results["protocol"]``); the report itself never reads settings objects or recipes.
"""

from __future__ import annotations

from .recipes import recipe_for


def benchmark_protocol(settings, records: dict) -> dict:
    """What was run, for the report and for anyone reading ``results.json`` later (its
    ``"protocol"``): ``settings`` (:class:`~ensemblekit.experiments.benchmark.BenchmarkSettings`)
    and the finished runs' records ``{(method, seed): record}``."""
    first = next(iter(records.values()))
    return {
        **model_protocol(settings),
        "corruptions": list(settings.corruptions),
        "severities": list(settings.severities),
        "ood": first["ood_name"],
        "ood_status": first["ood_status"],
        "ece_bins": 15,
        "aggregation": "softmax per member, then the mean over members",
        "std": "sample standard deviation over seeds (n - 1; 0 for one seed)",
        "validation_fraction": getattr(settings, "validation_fraction", None),
        "method_settings": {method: settings.method_settings(method)
                            for method in dict.fromkeys(m for m, _ in records)},
        "tuned": tuned_source(settings),
    }


def model_protocol(settings) -> dict:
    """The dataset, the network, the members' global settings and the optimiser a benchmark
    ran with (``"train"``: the TrainConfig less what only says where and how it ran)."""
    train = settings.train_config(seed=0).to_dict()
    for key in ("seed", "progress", "device", "dataset", "num_workers", "compile"):
        train.pop(key, None)
    return {
        "dataset": settings.dataset,
        "backbone": settings.backbone,
        "width": settings.width,
        "hidden": settings.hidden,
        "members": settings.members,
        "masksembles_scale": settings.scale,
        "mc_dropout_p": settings.dropout,
        "mc_samples": settings.mc_samples or settings.members,
        "train": train,
    }


def tuned_source(settings) -> str | None:
    """The recipe's ``"tuned"`` sentence (which config file and ``ensemblekit tune`` command
    chose its per-method settings on the validation split) when the settings run with the
    recipe's ``method_options`` unchanged; None otherwise (options set by a config or flags,
    or a recipe without tuned options)."""
    recipe = recipe_for(settings.dataset)
    tuned, chosen = recipe.get("tuned"), recipe.get("method_options")
    if not tuned or not chosen or settings.backbone != recipe.get("backbone"):
        return None
    in_use = settings.method_options
    if any(in_use.get(method, {}).get(key) != value
           for method, table in chosen.items() for key, value in table.items()):
        return None
    return tuned

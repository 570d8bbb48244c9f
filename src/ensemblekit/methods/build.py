"""``build_model``: a registered backbone turned into a registered method's model."""

from __future__ import annotations

import inspect
import json

import torch

from .. import models
from .._validation import check_int, check_seed
from .base import EnsembleModel
from .registry import get_method
from .task import head_size, set_task


def _options(builder) -> dict:
    """A builder's keyword-only options and their defaults."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(builder).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def _json_ready(value):
    """Tuples become lists, so the config equals its own JSON round trip."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_json_ready(item) for item in value]
    return value


def build_model(
    name: str, method: str, num_classes: int | None = None, in_channels: int | None = None, *,
    task: str = "classification", num_outputs: int | None = None, **options
) -> EnsembleModel:
    """Build backbone ``name`` as a ``method`` model for ``num_classes`` classes, or for
    ``num_outputs`` Gaussian regression targets (``task="regression"``).

    Args:
        name: a backbone from ``ensemblekit.models.available_backbones()``: "mlp", "lenet",
            "resnet20", "resnet18", "wrn28_10", "resnet50".
        method: one of ``ensemblekit.methods.available_methods()``: "single", "mc_dropout",
            "masksembles", "batchensemble", "packed_ensemble", "mimo", "deep_ensemble".
        num_classes: K, the number of logits (classification only).
        in_channels: channels of the input images (features for an ``mlp`` on vectors).
        task: ``"classification"`` (default: member logits) or ``"regression"``: the
            backbone's head writes ``2 * num_outputs`` values per member (means, raw
            variances) and ``predict_members`` returns ``GaussianMembers``, each (M, B, D)
            (:mod:`ensemblekit.methods.task`); every method and backbone supports it.
        num_outputs: D, the regression targets per example (regression only).
        **options: the backbone's options (``width`` for all; ``input_size`` for mlp and lenet;
            ``hidden`` for mlp) and the method's (``seed`` for all; ``n``; ``scale`` for
            masksembles; ``p`` for mc_dropout; ``placement`` ("all" | "dropout") and ``widen``
            for masksembles and mc_dropout (:mod:`ensemblekit.methods.placement`); ``init``,
            ``tile_batch`` for batchensemble; ``alpha``, ``gamma`` for packed_ensemble;
            ``input_repetition``, ``batch_repetitions`` for mimo;
            ``independent_batches``, ``inference`` for deep_ensemble). Unknown names raise.

    ``seed`` (default: drawn from torch's global generator, so ``torch.manual_seed`` controls
    it) initialises the parameters (member m of a deep ensemble: ``seed + m``) and the
    Masksembles masks, without touching the global generator's state otherwise.

    Returns:
        an :class:`EnsembleModel` whose ``config`` holds every argument, defaults resolved, so
        that ``build_model(**model.config)`` rebuilds the same architecture and initialisation.
        A classifier's config has no ``task`` key (its configs, checkpoints and results are
        those written before regression existed); a regression model's has ``task`` and
        ``num_outputs`` in place of ``num_classes``.
    """
    backbone_builder = models.get_backbone(name)
    method_builder = get_method(method)
    outputs = head_size(task, num_classes, num_outputs)
    if in_channels is None:
        raise ValueError("build_model: in_channels is missing: pass the input's channels "
                         "(features for an mlp on vectors), e.g. in_channels=10")
    in_channels = check_int("in_channels", in_channels, minimum=1)
    backbone_defaults = _options(backbone_builder)
    method_defaults = _options(method_builder)
    unknown = sorted(set(options) - set(backbone_defaults) - set(method_defaults))
    if unknown:
        valid = ", ".join(sorted({*backbone_defaults, *method_defaults}))
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for backbone {name!r} with method "
            f"{method!r}; valid options are: {valid}"
        )
    if options.get("seed") is None:
        options["seed"] = int(torch.randint(0, 2**31 - 1, ()).item())
    options["seed"] = check_seed(options["seed"])
    backbone_options = {key: options.get(key, value) for key, value in backbone_defaults.items()}
    method_options = {key: options.get(key, value) for key, value in method_defaults.items()}

    def make_backbone(layers: models.LayerFactory, seed: int) -> models.Backbone:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return backbone_builder(layers, outputs, in_channels, **backbone_options)

    model = method_builder(make_backbone, **method_options)
    head = ({"num_classes": outputs} if task == "classification"
            else {"task": task, "num_outputs": outputs // 2})
    config = {
        "name": name,
        "method": method,
        **head,
        "in_channels": in_channels,
        **backbone_options,
        **method_options,
    }
    set_task(model, task, head.get("num_outputs"))
    model.config = _json_ready(config)
    json.dumps(model.config)  # fail here, not at checkpoint time, if an option is not JSON
    return model


def method_defaults(method: str) -> dict:
    """The keyword options ``build_model`` accepts for ``method``, with their defaults
    (``seed`` included): e.g. ``{"seed": ..., "n": 4, "scale": 2.0}`` for "masksembles"."""
    return _options(get_method(method))


def backbone_defaults(name: str) -> dict:
    """The keyword options ``build_model`` accepts for backbone ``name``, with their defaults:
    e.g. ``{"width": 1.0, "input_size": 28}`` for "lenet"."""
    return _options(models.get_backbone(name))

"""``to_batchensemble``: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` of a network replaced by
its BatchEnsemble version (the layer's weight shared, rank-1 fast weights per member)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_flag, check_int
from ..layers.batchensemble import (
    FAST_WEIGHT_INITS,
    BatchEnsembleConv1d,
    BatchEnsembleConv2d,
    BatchEnsembleConv3d,
    BatchEnsembleLinear,
)
from ..methods.batchensemble import BatchEnsembleModel
from ..submodules import replace_module
from ._sites import attach_recipe, check_module, shapes_from_dry_run
from .regression import as_task, check_outputs, task_options

#: layer -> its BatchEnsemble twin (exact types: a subclass may change the behaviour)
_BATCHENSEMBLE_FOR = {
    nn.Linear: BatchEnsembleLinear,
    nn.Conv1d: BatchEnsembleConv1d,
    nn.Conv2d: BatchEnsembleConv2d,
    nn.Conv3d: BatchEnsembleConv3d,
}


def _unsupported_for_batchensemble(path: str, module: nn.Module) -> str | None:
    """Why ``module`` blocks a BatchEnsemble conversion, or None."""
    if isinstance(module, nn.MultiheadAttention):
        return "it reads its projection weights directly, so they cannot become BatchEnsemble"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        return "it is a lazy module that has not been initialised; run one forward first"
    supported = tuple(_BATCHENSEMBLE_FOR)
    if isinstance(module, supported) and type(module) not in supported:
        return f"it subclasses {type(module).__mro__[1].__name__} and may change its behaviour"
    if type(module) in supported and getattr(module, "padding_mode", "zeros") != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros' is supported)"
    if isinstance(module, nn.modules.conv._ConvNd | nn.RNNBase | nn.Bilinear) and not isinstance(
        module, supported
    ):
        return (
            f"{type(module).__name__} has no BatchEnsemble version here (nn.Linear and "
            "nn.Conv1d/2d/3d have); its weights would be silently shared by all members"
        )
    return None


def _batchensemble_twin(module: nn.Module, n: int, init: str) -> nn.Module:
    """A BatchEnsemble layer holding ``module``'s weight (shared) and bias (every member)."""
    factory = {"device": module.weight.device, "dtype": module.weight.dtype}
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        twin = BatchEnsembleLinear(
            module.in_features, module.out_features, n, bias=bias, init=init, **factory
        )
    else:
        twin = _BATCHENSEMBLE_FOR[type(module)](
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            n,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=bias,
            init=init,
            **factory,
        )
    with torch.no_grad():
        twin.weight.copy_(module.weight)
        if bias:
            twin.bias.copy_(module.bias.expand_as(twin.bias))
    return twin


def _apply_batchensemble(
    model: nn.Module, n: int, init: str, tile_batch: bool, layers: list[dict]
) -> BatchEnsembleModel:
    """Replace each recorded layer of ``model`` by its BatchEnsemble twin; wrap the result."""
    if layers[0]["path"] == "":
        # The model itself is one layer: wrap the twin directly.
        return BatchEnsembleModel(_batchensemble_twin(model, n, init), n, tile_batch=tile_batch)
    for layer in layers:
        replace_module(model, layer["path"],
                 _batchensemble_twin(model.get_submodule(layer["path"]), n, init))
    return BatchEnsembleModel(model, n, tile_batch=tile_batch)


def to_batchensemble(
    model: nn.Module, n: int, *, init: str = "normal", tile_batch: bool = True,
    example_input: torch.Tensor | None = None, task: str = "classification",
    num_outputs: int | None = None, noise: str | None = None,
) -> BatchEnsembleModel:
    """Replace every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` in ``model`` by its BatchEnsemble
    version.

    The shared weight is the layer's weight and every member's bias its bias; the fast weights
    start from ``init`` (``"ones"`` keeps the model's function exactly at the start, e.g. to
    fine-tune a trained network). Normalisation and other layers stay shared. Other layers
    with weights that BatchEnsemble would have to split (transposed convolutions, RNNs,
    ``nn.MultiheadAttention``, subclasses of Linear / Conv) raise.

    ``example_input`` (optional, a batch like the ones you will predict on): checked by one
    dry forward of the network, its shape and dtype (not its data) kept in the recipe, so
    ``export(model, path)`` needs no second example.

    ``task="regression", num_outputs=D`` (and ``noise``) converts a regression network
    (:mod:`ensemblekit.convert.regression`): it outputs 2*D values per example (means, raw
    variances), or D means with ``noise="homoscedastic"`` (one learned variance per output).

    Returns:
        a :class:`~ensemblekit.methods.BatchEnsembleModel` (``tile_batch`` as in build_model).
    """
    model = check_module(model)
    n = check_int("n", n, minimum=1)
    init = check_choice("init", init, FAST_WEIGHT_INITS)
    tile_batch = check_flag("tile_batch", tile_batch)
    task_of = task_options("to_batchensemble", task, num_outputs, noise)
    check_outputs("to_batchensemble", model, task_of, example_input)
    modules = list(model.named_modules())
    for path, module in modules:
        reason = _unsupported_for_batchensemble(path, module)
        if reason is not None:
            raise ValueError(f"to_batchensemble: cannot convert {path or 'the model'!r}: {reason}")
    layers = [
        {"path": path, "layer": type(m).__name__}
        for path, m in modules
        if type(m) in _BATCHENSEMBLE_FOR
    ]
    if not layers:
        raise ValueError("to_batchensemble: model has no nn.Linear or nn.Conv1d/2d/3d layer")
    if example_input is not None:  # fails here, naming example_input, if it does not fit
        shapes_from_dry_run(model, [], [], example_input, "to_batchensemble")
    converted = as_task(_apply_batchensemble(model, n, init, tile_batch, layers), task_of)
    recipe = {"converter": "to_batchensemble", "n": n, "init": init, "tile_batch": tile_batch,
              "layers": layers, **task_of.recipe()}
    return attach_recipe(converted, recipe, example_input)


def batchensemble_from_recipe(model: nn.Module, recipe: dict,
                              layers: list[dict]) -> BatchEnsembleModel:
    """The model ``to_batchensemble`` made, rebuilt on a fresh ``model`` from its ``recipe``."""
    return _apply_batchensemble(model, recipe["n"], recipe["init"], recipe["tile_batch"], layers)


def check_same_layer(path: str, module: nn.Module, site: dict) -> None:
    """Raise if the fresh network's module at a recipe's layer is not of the recorded type."""
    if type(module).__name__ != site.get("layer"):
        raise ValueError(
            f"the network's {path!r} is {type(module).__name__}, where the saved model had "
            f"nn.{site.get('layer')}: pass the network the model was converted from"
        )

"""Turn your own model into an ensemble model: Masksembles, MC-Dropout or BatchEnsemble.

Each converter changes the model in place (nested modules included) and returns it wrapped in
the method's :class:`~ensemblekit.methods.EnsembleModel`, so the training contract and
:func:`ensemblekit.predict_members` work exactly as for models from ``build_model``::

    model = to_masksembles(my_net, n=4, scale=2.0, example_input=x[:8])
    loss = F.cross_entropy(model(x), model.training_targets(y))    # B a multiple of 4
    member_logits = predict_members(model, x)                      # (4, B, K)

Your network is ``model.backbone`` (so its ``state_dict`` keys gain a ``backbone.`` prefix);
``model.config`` is ``None``: to rebuild, run the converter on a fresh copy of your network and
load the saved ``state_dict``. Anything a converter cannot handle raises a ``ValueError`` that
names the module's path and the reason.
"""

from __future__ import annotations

import torch
from torch import nn

from ._validation import check_choice, check_float, check_int, check_seed, check_tensor
from .layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from .layers.batchensemble import FAST_WEIGHT_INITS, BatchEnsembleConv2d, BatchEnsembleLinear
from .methods.base import check_flag
from .methods.batchensemble import BatchEnsembleModel
from .methods.masksembles import MasksemblesModel
from .methods.mc_dropout import MCDropoutModel, dropout_modules

#: dropout class -> (Masksembles class, input ranks it accepts)
_MASKSEMBLES_FOR = {
    nn.Dropout: (Masksembles, (2, 4, 5)),
    nn.Dropout1d: (Masksembles1d, (2, 3)),
    nn.Dropout2d: (Masksembles2d, (4,)),
    nn.Dropout3d: (Masksembles3d, (5,)),
}

#: modules whose output keeps the channel count of their input (walked through when a width
#: is read off the layer before a dropout in an nn.Sequential)
_WIDTH_PRESERVING = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardswish,
    nn.Identity,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd,
)


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path), name, new)


def _check_module(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _widths_from_dry_run(
    model: nn.Module, paths: list[str], example_input: torch.Tensor
) -> dict[str, tuple[int, int]]:
    """(channels on dim 1, rank) of the input each dropout at ``paths`` receives."""
    check_tensor("example_input", example_input)
    seen: dict[str, set[tuple[int, int]]] = {path: set() for path in paths}

    def recorder(path: str):
        def hook(module, inputs):
            x = inputs[0]
            seen[path].add((x.shape[1] if x.ndim > 1 else -1, x.ndim))

        return hook

    handles = [model.get_submodule(p).register_forward_pre_hook(recorder(p)) for p in paths]
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    found = {}
    for path, shapes in seen.items():
        if not shapes:
            raise ValueError(
                f"to_masksembles: dropout {path!r} was not called during the dry forward on "
                "example_input, so its width is unknown; remove it or pass an input that reaches it"
            )
        if len(shapes) > 1:
            raise ValueError(
                f"to_masksembles: dropout {path!r} is called on inputs of different shapes "
                f"{sorted(shapes)}; one Masksembles layer has one width: use one dropout module "
                "per place"
            )
        found[path] = shapes.pop()
    return found


def _width_from_previous_layer(model: nn.Module, path: str) -> int:
    """The channel count written by the layer before ``path`` in its ``nn.Sequential``."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    if isinstance(parent, nn.Sequential):
        siblings = list(parent._modules.items())
        index = [key for key, _ in siblings].index(name)
        for _, previous in reversed(siblings[:index]):
            for attribute in ("out_features", "out_channels", "num_features"):
                if isinstance(getattr(previous, attribute, None), int):
                    return getattr(previous, attribute)
            if not isinstance(previous, _WIDTH_PRESERVING):
                break
    raise ValueError(
        f"to_masksembles: cannot infer the width of dropout {path!r} from the layers before it "
        "(it is not preceded, within an nn.Sequential, by a linear / conv / norm layer and "
        "activations); pass example_input so a dry forward can measure it"
    )


def to_masksembles(
    model: nn.Module,
    n: int,
    scale: float,
    *,
    example_input: torch.Tensor | None = None,
    seed: int | None = None,
) -> MasksemblesModel:
    """Replace every ``nn.Dropout`` / ``Dropout1d/2d/3d`` in ``model`` by a Masksembles layer.

    Widths come from a dry forward on ``example_input`` (hooks record the input of every
    dropout; give at least one example) or, without it, from the linear / conv / norm layer
    before the dropout in its ``nn.Sequential``. ``nn.Dropout`` becomes :class:`Masksembles`
    on dim 1 and accepts (B, C) and (B, C, H, W[, D]) inputs, not 3-D ones (ambiguous: (B, C, L)
    or (B, T, F); use ``nn.Dropout1d`` where dim 1 holds channels). All layers are built with
    the same ``seed`` (drawn from torch's generator when ``None``), so layers of the same width
    share masks.

    Returns:
        a :class:`~ensemblekit.methods.MasksemblesModel` with ``n`` members around ``model``.
    """
    model = _check_module(model)
    n = check_int("n", n, minimum=1)
    scale = check_float("scale", scale, minimum=1.0)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    seed = check_seed(seed)
    dropouts = [
        (path, m)
        for path, m in model.named_modules()
        if isinstance(m, nn.modules.dropout._DropoutNd)
    ]
    if not dropouts:
        raise ValueError(
            "to_masksembles: model has no nn.Dropout / Dropout1d / Dropout2d / Dropout3d layer "
            "to replace; Masksembles goes where dropout would go"
        )
    for path, module in dropouts:
        if not path:
            raise ValueError(
                "to_masksembles: the model is a dropout layer; build a Masksembles layer"
            )
        if type(module) not in _MASKSEMBLES_FOR:
            raise ValueError(
                f"to_masksembles: {path!r} is {type(module).__name__}, which has no Masksembles "
                "counterpart (only nn.Dropout, Dropout1d, Dropout2d and Dropout3d are replaced)"
            )
    paths = [path for path, _ in dropouts]
    if example_input is not None:
        measured = _widths_from_dry_run(model, paths, example_input)
    else:
        measured = {path: (_width_from_previous_layer(model, path), None) for path in paths}
    for path, module in dropouts:
        channels, rank = measured[path]
        layer, ranks = _MASKSEMBLES_FOR[type(module)]
        if rank is not None and rank not in ranks:
            raise ValueError(
                f"to_masksembles: {type(module).__name__} {path!r} receives {rank}-D inputs; "
                f"it can become a Masksembles layer on {' or '.join(map(str, ranks))}-D inputs "
                "(dim 1 must hold the channels)"
            )
        _replace(model, path, layer(channels, n, scale, seed=seed))
    return MasksemblesModel(model, n)


def to_mc_dropout(model: nn.Module, *, num_samples: int = 8) -> MCDropoutModel:
    """Keep ``model``'s dropout layers stochastic at inference: ``num_samples`` passes = members.

    The model needs at least one dropout layer with ``p > 0``; nothing is replaced.
    """
    model = _check_module(model)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    if not any(layer.p > 0 for layer in dropout_modules(model)):
        raise ValueError(
            "to_mc_dropout: model has no dropout layer with p > 0, so every stochastic pass "
            "would be the same; add nn.Dropout layers first"
        )
    return MCDropoutModel(model, num_samples)


def _unsupported_for_batchensemble(path: str, module: nn.Module) -> str | None:
    """Why ``module`` blocks a BatchEnsemble conversion, or None."""
    if isinstance(module, nn.MultiheadAttention):
        return "it reads its projection weights directly, so they cannot become BatchEnsemble"
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        return "it is a lazy module that has not been initialised; run one forward first"
    if isinstance(module, nn.Linear | nn.Conv2d) and type(module) not in (nn.Linear, nn.Conv2d):
        return f"it subclasses {type(module).__mro__[1].__name__} and may change its behaviour"
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        return f"padding_mode={module.padding_mode!r} (only 'zeros' is supported)"
    if isinstance(module, nn.modules.conv._ConvNd | nn.RNNBase | nn.Bilinear) and not isinstance(
        module, nn.Conv2d
    ):
        return (
            f"{type(module).__name__} has no BatchEnsemble version here (nn.Linear and nn.Conv2d "
            "have); its weights would be silently shared by all members"
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
        twin = BatchEnsembleConv2d(
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


def to_batchensemble(
    model: nn.Module, n: int, *, init: str = "normal", tile_batch: bool = True
) -> BatchEnsembleModel:
    """Replace every ``nn.Linear`` and ``nn.Conv2d`` in ``model`` by its BatchEnsemble version.

    The shared weight is the layer's weight and every member's bias its bias; the fast weights
    start from ``init`` (``"ones"`` keeps the model's function exactly at the start, e.g. to
    fine-tune a trained network). Normalisation and other layers stay shared. Other layers
    with weights that BatchEnsemble would have to split (other convolutions, RNNs,
    ``nn.MultiheadAttention``, subclasses of Linear / Conv2d) raise.

    Returns:
        a :class:`~ensemblekit.methods.BatchEnsembleModel` (``tile_batch`` as in build_model).
    """
    model = _check_module(model)
    n = check_int("n", n, minimum=1)
    init = check_choice("init", init, FAST_WEIGHT_INITS)
    tile_batch = check_flag("tile_batch", tile_batch)
    modules = list(model.named_modules())
    for path, module in modules:
        reason = _unsupported_for_batchensemble(path, module)
        if reason is not None:
            raise ValueError(f"to_batchensemble: cannot convert {path or 'the model'!r}: {reason}")
    targets = [(path, m) for path, m in modules if type(m) in (nn.Linear, nn.Conv2d)]
    if not targets:
        raise ValueError("to_batchensemble: model has no nn.Linear or nn.Conv2d layer")
    if not targets[0][0]:
        # The model itself is one layer: wrap the twin directly.
        return BatchEnsembleModel(_batchensemble_twin(model, n, init), n, tile_batch=tile_batch)
    for path, module in targets:
        _replace(model, path, _batchensemble_twin(module, n, init))
    return BatchEnsembleModel(model, n, tile_batch=tile_batch)

"""Turn your own model into an ensemble model: Masksembles, MC-Dropout or BatchEnsemble.

Each converter changes the model in place (nested modules included) and returns it wrapped in
the method's :class:`~ensemblekit.methods.EnsembleModel`, so the training contract and
:func:`ensemblekit.predict_members` work exactly as for models from ``build_model``::

    model = to_masksembles(my_net, n=4, scale=2.0, example_input=x[:8])
    loss = F.cross_entropy(model(x), model.training_targets(y))    # B a multiple of 4
    member_logits = predict_members(model, x)                      # (4, B, K)

Drop sites are the network's dropout layers, or, with ``sites`` (module paths such as
``["avgpool"]``, or a predicate ``(path, module) -> bool``), places after chosen modules, for a
network without dropout (torchvision's ResNets).

Your network is ``model.backbone`` (so its ``state_dict`` keys gain a ``backbone.`` prefix; a
site inserted after module ``a.b`` makes it ``a.b.0``, the new layer ``a.b.1``);
``model.config`` is ``None`` and ``model.recipe`` records what the converter did (a
JSON-serialisable dict: converter, options, every site with its resolved width), so
:func:`ensemblekit.save` / ``load(path, into=network)`` rebuild the model on a fresh copy of
your network without a dry run (:func:`apply_recipe`). Anything a converter cannot handle
raises a ``ValueError`` that names the module's path and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._validation import check_choice, check_float, check_int, check_seed, check_tensor
from .layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from .layers.batchensemble import (
    FAST_WEIGHT_INITS,
    BatchEnsembleConv1d,
    BatchEnsembleConv2d,
    BatchEnsembleConv3d,
    BatchEnsembleLinear,
)
from .methods.base import EnsembleModel, check_flag
from .methods.batchensemble import BatchEnsembleModel
from .methods.masksembles import MasksemblesModel
from .methods.mc_dropout import MCDropoutModel, dropout_modules
from .methods.seeded_dropout import unseeded_dropouts

#: the converters :func:`apply_recipe` can replay
CONVERTERS = ("to_masksembles", "to_mc_dropout", "to_batchensemble")

#: where a drop site goes: in place of a dropout layer, or after a chosen module
_ACTIONS = ("replace", "insert")

#: the Masksembles layers a recipe may name
_MASKSEMBLES_LAYERS = {
    layer.__name__: layer for layer in (Masksembles, Masksembles1d, Masksembles2d, Masksembles3d)
}

#: dropout class -> (Masksembles class, input ranks it accepts on dim 1)
_MASKSEMBLES_FOR = {
    nn.Dropout: (Masksembles, (2, 4, 5)),
    nn.Dropout1d: (Masksembles1d, (2, 3)),
    nn.Dropout2d: (Masksembles2d, (4,)),
    nn.Dropout3d: (Masksembles3d, (5,)),
}

#: layer -> its BatchEnsemble twin (exact types: a subclass may change the behaviour)
_BATCHENSEMBLE_FOR = {
    nn.Linear: BatchEnsembleLinear,
    nn.Conv1d: BatchEnsembleConv1d,
    nn.Conv2d: BatchEnsembleConv2d,
    nn.Conv3d: BatchEnsembleConv3d,
}

#: modules whose 3-D output (B, C, L) holds channels on dim 1; after any other module a 3-D
#: output is read as feature-last (B, T, F), the layout of nn.Linear and transformers
_CHANNELS_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)

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

#: ``sites``: module paths, or a predicate ``(path, module) -> bool``
Sites = Sequence[str] | Callable[[str, nn.Module], bool]


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent_path), name, new)


def _check_module(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, EnsembleModel):
        raise ValueError(
            f"model is already an ensemble model ({type(model).__name__}, method "
            f"{model.method!r}); convert the plain network (model.backbone of a fresh copy)"
        )
    return model


def _select_sites(model: nn.Module, sites, converter: str) -> list[str]:
    """The module paths ``sites`` names (checked to exist) or its predicate selects."""
    if callable(sites) and not isinstance(sites, (str, nn.Module)):
        chosen = [path for path, module in model.named_modules() if path and sites(path, module)]
        if not chosen:
            raise ValueError(
                f"{converter}: the sites predicate selected no module; it is called as "
                "sites(path, module) on every submodule (paths as in model.named_modules())"
            )
        return chosen
    if (
        isinstance(sites, str)
        or not isinstance(sites, Sequence)
        or not sites
        or not all(isinstance(path, str) for path in sites)
    ):
        raise TypeError(
            f"sites must be a non-empty list of module paths (e.g. ['avgpool']) or a predicate "
            f"(path, module) -> bool, got {sites!r}"
        )
    if len(set(sites)) != len(sites):
        raise ValueError(f"{converter}: sites {list(sites)} names a module twice")
    names = [path for path, _ in model.named_modules() if path]
    for path in sites:
        if path not in names:
            shown = ", ".join(repr(name) for name in names[:8])
            raise ValueError(
                f"{converter}: sites names {path!r}, which is not a submodule of the model "
                f"(the root cannot be a site; paths as in model.named_modules(): {shown}, ...)"
            )
    return list(sites)


def _shapes_from_dry_run(
    model: nn.Module, inputs_of: list[str], outputs_of: list[str], example_input: torch.Tensor,
    converter: str,
) -> dict[str, set[tuple[int, ...]]]:
    """The shapes of what each module at ``inputs_of`` receives and at ``outputs_of`` returns
    during one eval-mode forward of ``example_input``."""
    check_tensor("example_input", example_input)
    seen: dict[str, set[tuple[int, ...]]] = {path: set() for path in inputs_of + outputs_of}

    def recorder(path: str):
        def hook(module, inputs, output=None):
            x = inputs[0] if output is None else output
            if not isinstance(x, torch.Tensor):
                raise ValueError(
                    f"{converter}: {path!r} returns a {type(x).__name__}, not a tensor; "
                    "a drop site goes after a module that returns one tensor"
                )
            seen[path].add(tuple(x.shape))

        return hook

    handles = [model.get_submodule(p).register_forward_pre_hook(recorder(p)) for p in inputs_of]
    handles += [model.get_submodule(p).register_forward_hook(recorder(p)) for p in outputs_of]
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
    for path, shapes in seen.items():
        if not shapes:
            raise ValueError(
                f"{converter}: {path!r} was not called during the dry forward on "
                "example_input, so its width is unknown; remove it or pass an input that reaches it"
            )
    return seen


def _width_from_previous_layer(model: nn.Module, path: str) -> tuple[int, int]:
    """(channels, dim) written by the layer before ``path`` in its ``nn.Sequential``: a
    linear layer's features are on the last dim, a conv's or norm's channels on dim 1."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    if isinstance(parent, nn.Sequential):
        siblings = list(parent._modules.items())
        index = [key for key, _ in siblings].index(name)
        for _, previous in reversed(siblings[:index]):
            for attribute, dim in (("out_features", -1), ("out_channels", 1), ("num_features", 1)):
                if isinstance(getattr(previous, attribute, None), int):
                    return getattr(previous, attribute), dim
            if not isinstance(previous, _WIDTH_PRESERVING):
                break
    raise ValueError(
        f"to_masksembles: cannot infer the width of dropout {path!r} from the layers before it "
        "(it is not preceded, within an nn.Sequential, by a linear / conv / norm layer and "
        "activations); pass example_input so a dry forward can measure it"
    )


def _masksembles_site(path: str, module: nn.Module, action: str, shape: tuple) -> dict:
    """The Masksembles layer (class name, channels, dim) for a site that sees ``shape``."""
    rank = len(shape)
    if action == "replace":
        layer, ranks = _MASKSEMBLES_FOR[type(module)]
        if type(module) is nn.Dropout and rank == 3:
            # (B, T, F): nn.Dropout's place in transformers; the features are the channels.
            layer, dim = Masksembles, -1
        elif rank in ranks:
            dim = 1
        else:
            raise ValueError(
                f"to_masksembles: {type(module).__name__} {path!r} receives {rank}-D inputs; "
                f"it can become a Masksembles layer on {' or '.join(map(str, ranks))}-D inputs "
                "(dim 1 must hold the channels)"
            )
    elif rank == 2 or (rank == 3 and isinstance(module, _CHANNELS_FIRST)):
        layer, dim = Masksembles1d, 1
    elif rank == 3:
        layer, dim = Masksembles, -1
    elif rank in (4, 5):
        layer, dim = (Masksembles2d, Masksembles3d)[rank - 4], 1
    else:
        raise ValueError(
            f"to_masksembles: site {path!r} returns {rank}-D outputs (shape {shape}); a site "
            "goes after a module returning (B, C), (B, C, L) / (B, T, F), (B, C, H, W) or "
            "(B, C, D, H, W)"
        )
    return {"path": path, "action": action, "layer": layer.__name__, "channels": shape[dim],
            "dim": dim}


def _deepest_first(sites: list[dict]) -> list[dict]:
    # Wrapping a module renames its descendants (a.b -> a.b.0): do descendants first.
    return sorted(sites, key=lambda site: site["path"].count("."), reverse=True)


def _insert_after(model: nn.Module, path: str, layer: nn.Module) -> None:
    _replace(model, path, nn.Sequential(model.get_submodule(path), layer))


def _keep_submodules(module: nn.Module, inputs: tuple) -> None:
    """A forward pre-hook that changes nothing (see :func:`_apply_masksembles`)."""


def _apply_masksembles(model: nn.Module, n: int, scale: float, seed: int, sites: list[dict]):
    for site in _deepest_first(sites):
        layer = _MASKSEMBLES_LAYERS[site["layer"]](
            site["channels"], n, scale, seed=seed, dim=site["dim"]
        )
        if site["action"] == "replace":
            _replace(model, site["path"], layer)
        else:
            _insert_after(model, site["path"], layer)
    # In eval mode without gradients nn.TransformerEncoderLayer runs one fused kernel that
    # skips its submodules, masks included (every member would be the same); torch turns that
    # path off for a layer with forward hooks, so each one holding a site gets a no-op hook.
    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer) and any(
            isinstance(inner, Masksembles) for inner in module.modules()
        ) and _keep_submodules not in module._forward_pre_hooks.values():
            module.register_forward_pre_hook(_keep_submodules)


def to_masksembles(
    model: nn.Module,
    n: int,
    scale: float,
    *,
    example_input: torch.Tensor | None = None,
    seed: int | None = None,
    sites: Sites | None = None,
) -> MasksemblesModel:
    """Put Masksembles layers at ``model``'s drop sites: its dropout layers, or after ``sites``.

    Without ``sites``, every ``nn.Dropout`` / ``Dropout1d/2d/3d`` is replaced. With ``sites``
    (module paths, or a predicate ``(path, module) -> bool`` over ``model.named_modules()``), a
    Masksembles layer goes after each selected module (a selected dropout layer is replaced;
    dropout layers not selected stay as they are). Layer per input shape: (B, C) and the
    (B, C, H, W[, D]) maps of conv nets are masked on dim 1, like ``Dropout1d/2d/3d``; (B, T, F)
    sequences on the last dim (``nn.Dropout`` in a transformer; a site after a linear layer,
    attention, ...) -- except after a conv / norm / pooling layer, which writes (B, C, L).

    Widths come from a dry forward on ``example_input`` (needed with ``sites``; hooks record the
    shapes each site sees) or, without it, from the linear / conv / norm layer before the
    dropout in its ``nn.Sequential``. All layers are built with the same ``seed`` (drawn from
    torch's generator when ``None``), so layers of the same width share masks.

    Returns:
        a :class:`~ensemblekit.methods.MasksemblesModel` with ``n`` members around ``model``,
        its ``recipe`` recording every site.
    """
    model = _check_module(model)
    n = check_int("n", n, minimum=1)
    scale = check_float("scale", scale, minimum=1.0)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    seed = check_seed(seed)
    if sites is not None:
        chosen = _select_sites(model, sites, "to_masksembles")
        if example_input is None:
            raise ValueError(
                "to_masksembles: sites needs example_input (a batch of at least one example) so "
                "a dry forward can measure what each site outputs"
            )
        targets = [
            (path, model.get_submodule(path),
             "replace" if isinstance(model.get_submodule(path), nn.modules.dropout._DropoutNd)
             else "insert")
            for path in chosen
        ]
    else:
        targets = [
            (path, m, "replace")
            for path, m in model.named_modules()
            if isinstance(m, nn.modules.dropout._DropoutNd)
        ]
        if not targets:
            raise ValueError(
                "to_masksembles: model has no nn.Dropout / Dropout1d / Dropout2d / Dropout3d "
                "layer to replace; Masksembles goes where dropout would go: pass sites=[...] to "
                "put it after chosen modules"
            )
    for path, module, action in targets:
        if not path:
            raise ValueError(
                "to_masksembles: the model is a dropout layer; build a Masksembles layer"
            )
        if action == "replace" and type(module) not in _MASKSEMBLES_FOR:
            raise ValueError(
                f"to_masksembles: {path!r} is {type(module).__name__}, which has no Masksembles "
                "counterpart (only nn.Dropout, Dropout1d, Dropout2d and Dropout3d are replaced)"
            )
    if example_input is not None:
        shapes = _shapes_from_dry_run(
            model,
            [path for path, _, action in targets if action == "replace"],
            [path for path, _, action in targets if action == "insert"],
            example_input,
            "to_masksembles",
        )
    plan = []
    for path, module, action in targets:
        if example_input is None:
            channels, dim = _width_from_previous_layer(model, path)
            plan.append({"path": path, "action": action, "layer": "Masksembles",
                         "channels": channels, "dim": dim})
            continue
        found = [_masksembles_site(path, module, action, shape) for shape in sorted(shapes[path])]
        if any(site != found[0] for site in found):
            raise ValueError(
                f"to_masksembles: {path!r} sees inputs of different shapes "
                f"{sorted(shapes[path])}; one Masksembles layer has one width: use one module "
                "per place"
            )
        plan.append(found[0])
    _apply_masksembles(model, n, scale, seed, plan)
    converted = MasksemblesModel(model, n)
    converted.recipe = {"converter": "to_masksembles", "n": n, "scale": scale, "seed": seed,
                        "sites": plan}
    return converted


def _apply_mc_dropout(model: nn.Module, sites: list[dict]) -> None:
    for site in _deepest_first(sites):
        _insert_after(model, site["path"], nn.Dropout(site["p"]))


def to_mc_dropout(
    model: nn.Module,
    *,
    num_samples: int = 8,
    sites: Sites | None = None,
    p: float = 0.1,
    seed: int | None = None,
) -> MCDropoutModel:
    """Keep ``model``'s dropout layers stochastic at inference: ``num_samples`` passes = members.

    With ``sites`` (module paths, or a predicate ``(path, module) -> bool``), an element-wise
    ``nn.Dropout(p)`` goes after each selected module first (the model's own dropout layers
    stay). The model then needs at least one dropout layer with ``p > 0``. Inference draws
    member m's masks from a generator seeded with ``seed`` (drawn from torch's generator when
    ``None``): ``predict_members`` is the same call after call and leaves the global RNG
    alone (:mod:`ensemblekit.methods.seeded_dropout`).
    """
    model = _check_module(model)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    p = check_float("p", p, minimum=0.0, maximum=1.0, max_inclusive=False)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    seed = check_seed(seed)
    plan = []
    if sites is not None:
        chosen = _select_sites(model, sites, "to_mc_dropout")
        plan = [{"path": path, "action": "insert", "p": p} for path in chosen]
    unseeded = unseeded_dropouts(model)
    if unseeded:
        raise ValueError(
            f"to_mc_dropout: {', '.join(unseeded)} would draw its noise from the global RNG; "
            "MC-Dropout samples nn.Dropout and Dropout1d/2d/3d from its own generator only: "
            "replace them"
        )
    if not any(layer.p > 0 for layer in dropout_modules(model)) and (not plan or p == 0):
        raise ValueError(
            "to_mc_dropout: model has no dropout layer with p > 0, so every stochastic pass "
            "would be the same; add nn.Dropout layers first, or pass sites=[...] and p > 0"
        )
    _apply_mc_dropout(model, plan)
    converted = MCDropoutModel(model, num_samples, seed=seed)
    converted.recipe = {"converter": "to_mc_dropout", "num_samples": num_samples, "seed": seed,
                        "sites": plan}
    return converted


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
    if layers[0]["path"] == "":
        # The model itself is one layer: wrap the twin directly.
        return BatchEnsembleModel(_batchensemble_twin(model, n, init), n, tile_batch=tile_batch)
    for layer in layers:
        _replace(model, layer["path"],
                 _batchensemble_twin(model.get_submodule(layer["path"]), n, init))
    return BatchEnsembleModel(model, n, tile_batch=tile_batch)


def to_batchensemble(
    model: nn.Module, n: int, *, init: str = "normal", tile_batch: bool = True
) -> BatchEnsembleModel:
    """Replace every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` in ``model`` by its BatchEnsemble
    version.

    The shared weight is the layer's weight and every member's bias its bias; the fast weights
    start from ``init`` (``"ones"`` keeps the model's function exactly at the start, e.g. to
    fine-tune a trained network). Normalisation and other layers stay shared. Other layers
    with weights that BatchEnsemble would have to split (transposed convolutions, RNNs,
    ``nn.MultiheadAttention``, subclasses of Linear / Conv) raise.

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
    layers = [
        {"path": path, "layer": type(m).__name__}
        for path, m in modules
        if type(m) in _BATCHENSEMBLE_FOR
    ]
    if not layers:
        raise ValueError("to_batchensemble: model has no nn.Linear or nn.Conv1d/2d/3d layer")
    converted = _apply_batchensemble(model, n, init, tile_batch, layers)
    converted.recipe = {"converter": "to_batchensemble", "n": n, "init": init,
                        "tile_batch": tile_batch, "layers": layers}
    return converted


def apply_recipe(model: nn.Module, recipe: dict) -> EnsembleModel:
    """Convert a fresh, unconverted ``model`` as ``recipe`` (a converted model's ``recipe``)
    says, without a dry forward: the same layers at the same paths, so the converted model's
    ``state_dict`` loads into the result. Parameters and masks are initialised, not copied:
    load the weights afterwards (:func:`ensemblekit.load` with ``into=`` does both).

    Raises ``ValueError`` naming the path where ``model`` differs from the recipe's network.
    """
    model = _check_module(model)
    converter = recipe.get("converter") if isinstance(recipe, dict) else None
    check_choice("recipe converter", converter, CONVERTERS)
    sites = recipe.get("layers" if converter == "to_batchensemble" else "sites")
    if not isinstance(sites, list) or not all(isinstance(site, dict) for site in sites):
        raise ValueError(f"recipe has no list of sites: {recipe!r}")
    names = dict(model.named_modules())
    for site in sites:
        path = site.get("path")
        module = names.get(path)
        if module is None:
            raise ValueError(
                f"the network has no module {path!r}, where the saved {converter} model has a "
                f"site; pass the network the model was converted from ({type(model).__name__} "
                "has other modules)"
            )
        expected = site.get("layer") if converter == "to_batchensemble" else (
            "a dropout layer" if site.get("action") == "replace" else None)
        if converter == "to_batchensemble" and type(module).__name__ != expected:
            raise ValueError(
                f"the network's {path!r} is {type(module).__name__}, where the saved model had "
                f"nn.{expected}: pass the network the model was converted from"
            )
        if expected == "a dropout layer" and not isinstance(module, nn.modules.dropout._DropoutNd):
            raise ValueError(
                f"the network's {path!r} is {type(module).__name__}, where the saved model "
                "replaced a dropout layer: pass the network the model was converted from"
            )
    if converter == "to_masksembles":
        for site in sites:
            check_choice("recipe site action", site.get("action"), _ACTIONS)
            check_choice("recipe site layer", site.get("layer"), _MASKSEMBLES_LAYERS)
        _apply_masksembles(model, recipe["n"], recipe["scale"], recipe["seed"], sites)
        converted = MasksemblesModel(model, recipe["n"])
    elif converter == "to_mc_dropout":
        _apply_mc_dropout(model, sites)
        converted = MCDropoutModel(model, recipe["num_samples"], seed=recipe["seed"])
    else:
        converted = _apply_batchensemble(
            model, recipe["n"], recipe["init"], recipe["tile_batch"], sites
        )
    converted.recipe = recipe
    return converted

"""``to_masksembles``: Masksembles layers at a network's drop sites (its dropout layers, or
after chosen modules), each layer's width and mask dimension read off the network."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_float, check_int, check_seed
from ..layers import Masksembles, Masksembles1d, Masksembles2d, Masksembles3d
from ..methods.masksembles import MasksemblesModel
from ..submodules import replace_module
from ._sites import (
    ACTIONS,
    Sites,
    attach_recipe,
    check_module,
    deepest_first,
    insert_after,
    leave_uncalled,
    select_sites,
    shapes_from_dry_run,
)
from .regression import as_task, check_outputs, task_options

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


def _keep_submodules(module: nn.Module, inputs: tuple) -> None:
    """A forward pre-hook that changes nothing (see :func:`_apply_masksembles`)."""


def _apply_masksembles(model: nn.Module, n: int, scale: float, seed: int, sites: list[dict]):
    """Put each site's Masksembles layer (``n`` masks, ``scale``, ``seed``) into ``model``."""
    for site in deepest_first(sites):
        layer = _MASKSEMBLES_LAYERS[site["layer"]](
            site["channels"], n, scale, seed=seed, dim=site["dim"]
        )
        if site["action"] == "replace":
            replace_module(model, site["path"], layer)
        else:
            insert_after(model, site["path"], layer)
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
    task: str = "classification",
    num_outputs: int | None = None,
    noise: str | None = None,
) -> MasksemblesModel:
    """Put Masksembles layers at ``model``'s drop sites: its dropout layers, or after ``sites``.

    Without ``sites``, every ``nn.Dropout`` / ``Dropout1d/2d/3d`` is replaced. With ``sites``
    (module paths, or a predicate ``(path, module) -> bool`` over ``model.named_modules()``), a
    Masksembles layer goes after each selected module (a selected dropout layer is replaced;
    dropout layers not selected stay as they are). Layer per input shape: (B, C) and the
    (B, C, H, W[, D]) maps of conv nets are masked on dim 1, like ``Dropout1d/2d/3d``; (B, T, F)
    sequences on the last dim (``nn.Dropout`` in a transformer; a site after a linear layer,
    attention, ...) -- except after a conv / norm / pooling layer, which writes (B, C, L).

    Where to put the masks: where dropout goes, the authors' advice (Durasov et al. 2021: a
    Masksembles layer "instead of dropout"), ``placement="dropout"`` in ``build_model``:
    the tune grid measured masking every layer worse in 14 of 16 paired settings (issue 19).
    So convert a network that has dropout without ``sites``; give ``sites`` to a network
    without dropout (after its pooling or its last hidden layers), not after every layer.

    Widths come from a dry forward on ``example_input`` (needed with ``sites``; hooks record the
    shapes each site sees) or, without it, from the linear / conv / norm layer before the
    dropout in its ``nn.Sequential``. A dropout module the dry forward never calls (a network
    that applies that dropout functionally, as timm's ViT and Hugging Face's BERT do for
    attention dropout) does nothing, so it is left in place, listed in the recipe's
    ``"not_called"``, with a ``UserWarning``; if no drop site remains, a ``ValueError`` names
    the skipped modules and suggests ``sites``. All layers are built with the same ``seed``
    (drawn from torch's generator when ``None``), so layers of the same width share masks.

    The recipe keeps ``example_input``'s shape and dtype (not its data; for integer inputs
    such as token ids also the range of its values), so ``compile_members(model)`` and
    ``export(model, path)`` need no second example.

    ``task="regression", num_outputs=D`` (and ``noise``) converts a regression network
    (:mod:`ensemblekit.convert.regression`): it outputs 2*D values per example (means, raw
    variances), or D means with ``noise="homoscedastic"`` (one learned variance per output).

    Returns:
        a :class:`~ensemblekit.methods.MasksemblesModel` with ``n`` members around ``model``,
        its ``recipe`` recording every site.
    """
    model = check_module(model)
    n = check_int("n", n, minimum=1)
    scale = check_float("scale", scale, minimum=1.0)
    task_of = task_options("to_masksembles", task, num_outputs, noise)
    check_outputs("to_masksembles", model, task_of, example_input)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    seed = check_seed(seed)
    if sites is not None:
        chosen = select_sites(model, sites, "to_masksembles")
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
    if any(not path for path, _, _ in targets):
        raise ValueError("to_masksembles: the model is a dropout layer; build a Masksembles layer")
    not_called = []
    if example_input is not None:
        shapes = shapes_from_dry_run(
            model,
            [path for path, _, action in targets if action == "replace"],
            [path for path, _, action in targets if action == "insert"],
            example_input,
            "to_masksembles",
            # a dropout module the network never calls does nothing: skip it (not one named)
            may_skip=[path for path, _, _ in targets] if sites is None else (),
        )
        not_called = [path for path, _, _ in targets if not shapes[path]]
        targets = [target for target in targets if shapes[target[0]]]
        leave_uncalled("to_masksembles", not_called, site_left=bool(targets),
                       fix="no drop site remains: pass sites=[...] (module paths, e.g. each "
                       "block's attention or MLP, after which a Masksembles layer goes)")
    for path, module, action in targets:
        if action == "replace" and type(module) not in _MASKSEMBLES_FOR:
            raise ValueError(
                f"to_masksembles: {path!r} is {type(module).__name__}, which has no Masksembles "
                "counterpart (only nn.Dropout, Dropout1d, Dropout2d and Dropout3d are replaced)"
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
    converted = as_task(MasksemblesModel(model, n), task_of)
    recipe = {"converter": "to_masksembles", "n": n, "scale": scale, "seed": seed,
              "sites": plan, "not_called": not_called, **task_of.recipe()}
    return attach_recipe(converted, recipe, example_input)


def masksembles_from_recipe(model: nn.Module, recipe: dict,
                            sites: list[dict]) -> MasksemblesModel:
    """The model ``to_masksembles`` made, rebuilt on a fresh ``model`` from its ``recipe``."""
    for site in sites:
        check_choice("recipe site action", site.get("action"), ACTIONS)
        check_choice("recipe site layer", site.get("layer"), _MASKSEMBLES_LAYERS)
    _apply_masksembles(model, recipe["n"], recipe["scale"], recipe["seed"], sites)
    return MasksemblesModel(model, recipe["n"])

"""Rebuild a converted model from its ``recipe`` (:func:`apply_recipe`), and the converter
registry that makes it possible: converter name -> how its recipe is replayed.

A new converter is one new file (its ``to_...`` function writing ``model.recipe``, and a
``..._from_recipe`` function rebuilding the model from it) plus one entry in ``_REPLAYS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from .._validation import check_choice
from ..methods.base import EnsembleModel
from ._sites import check_module, check_replaced_dropout
from .batchensemble import batchensemble_from_recipe, check_same_layer
from .masksembles import masksembles_from_recipe
from .mc_dropout import mc_dropout_from_recipe
from .packed_ensemble import packed_ensemble_from_recipe
from .regression import as_task, recipe_task_options


@dataclass(frozen=True)
class RecipeReplay:
    """How :func:`apply_recipe` replays one converter's recipe.

    Attributes:
        sites_key: the recipe's key holding its list of sites (dicts with a ``"path"``).
        check_site: ``(path, module, site) -> None``; raises ``ValueError`` when the fresh
            network's ``module`` at a site's ``path`` is not what the converter found there.
        rebuild: ``(network, recipe, sites) -> EnsembleModel``; converts the network in place,
            as the converter did, and wraps it (weights initialised, not loaded).
    """

    sites_key: str
    check_site: Callable[[str, nn.Module, dict], None]
    rebuild: Callable[[nn.Module, dict, list[dict]], EnsembleModel]


_REPLAYS: dict[str, RecipeReplay] = {
    "to_masksembles": RecipeReplay("sites", check_replaced_dropout, masksembles_from_recipe),
    "to_mc_dropout": RecipeReplay("sites", check_replaced_dropout, mc_dropout_from_recipe),
    "to_batchensemble": RecipeReplay("layers", check_same_layer, batchensemble_from_recipe),
    "to_packed_ensemble": RecipeReplay("layers", check_same_layer, packed_ensemble_from_recipe),
}

#: the converters :func:`apply_recipe` can replay
CONVERTERS = tuple(_REPLAYS)


def apply_recipe(model: nn.Module, recipe: dict) -> EnsembleModel:
    """Convert a fresh, unconverted ``model`` as ``recipe`` (a converted model's ``recipe``)
    says, without a dry forward: the same layers at the same paths, so the converted model's
    ``state_dict`` loads into the result. Parameters and masks are initialised, not copied:
    load the weights afterwards (:func:`ensemblekit.load` with ``into=`` does both).

    Raises ``ValueError`` naming the path where ``model`` differs from the recipe's network.
    """
    model = check_module(model)
    converter = recipe.get("converter") if isinstance(recipe, dict) else None
    replay = _REPLAYS[check_choice("recipe converter", converter, CONVERTERS)]
    task_of = recipe_task_options(recipe)
    sites = recipe.get(replay.sites_key)
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
        replay.check_site(path, module, site)
    converted = as_task(replay.rebuild(model, recipe, sites), task_of)
    converted.recipe = recipe
    return converted

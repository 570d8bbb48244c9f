"""The machinery every converter shares: which modules are sites, what shapes they see, how a
layer goes in at a site, and how a recipe's site is checked against a fresh network.

A site is a module path (``model.named_modules()`` style). A layer goes there in one of two
ways (``ACTIONS``): ``"replace"`` the module (a dropout layer), or ``"insert"`` after it (the
module at ``a.b`` becomes ``nn.Sequential(module, layer)``: ``a.b.0`` and ``a.b.1``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Sequence

import torch
from torch import nn

from .._validation import check_tensor
from ..example_inputs import input_record
from ..methods.base import EnsembleModel
from ..runtime import eval_mode
from ..submodules import replace_module

#: where a drop site goes: in place of a dropout layer, or after a chosen module
ACTIONS = ("replace", "insert")

#: ``sites``: module paths, or a predicate ``(path, module) -> bool``
Sites = Sequence[str] | Callable[[str, nn.Module], bool]


def check_module(model) -> nn.Module:
    """``model`` if it is a plain ``nn.Module`` that no converter has wrapped yet, else raise."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, EnsembleModel):
        raise ValueError(
            f"model is already an ensemble model ({type(model).__name__}, method "
            f"{model.method!r}); convert the plain network (model.backbone of a fresh copy)"
        )
    return model


def select_sites(model: nn.Module, sites, converter: str) -> list[str]:
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


def shapes_from_dry_run(
    model: nn.Module, inputs_of: list[str], outputs_of: list[str], example_input: torch.Tensor,
    converter: str, *, may_skip: Collection[str] = (),
) -> dict[str, set[tuple[int, ...]]]:
    """The shapes of what each module at ``inputs_of`` receives and at ``outputs_of`` returns
    during one eval-mode forward of ``example_input``; raises for a module the forward never
    calls, except those in ``may_skip`` (their set of shapes is empty)."""
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
    try:
        with eval_mode(model), torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    for path, shapes in seen.items():
        if not shapes and path not in may_skip:
            raise ValueError(
                f"{converter}: {path!r} was not called during the dry forward on "
                "example_input, so its width is unknown; remove it or pass an input that reaches it"
            )
    return seen


def leave_uncalled(converter: str, not_called: list[str], *, site_left: bool, fix: str,
                   stacklevel: int = 3) -> None:
    """Warn that the dropout modules at ``not_called`` (never called by the dry forward) stay as
    they are: they do nothing, since the network applies that dropout functionally. Raise
    instead, naming them and ``fix``, when no drop site is left (``site_left`` false)."""
    if not not_called:
        return
    note = (
        f"{converter}: the dry forward on example_input never called the dropout module(s) "
        f"{', '.join(repr(path) for path in not_called)}, so they do nothing in this network "
        "(it applies that dropout functionally, e.g. attention dropout through F.dropout or "
        "scaled_dot_product_attention); they are left in place, listed in the recipe's "
        "'not_called'"
    )
    if not site_left:
        raise ValueError(f"{note}; {fix}")
    warnings.warn(note, stacklevel=stacklevel)


def deepest_first(sites: list[dict]) -> list[dict]:
    """``sites`` (recipe entries with a ``"path"``) ordered so that descendants come first."""
    # Wrapping a module renames its descendants (a.b -> a.b.0): do descendants first.
    return sorted(sites, key=lambda site: site["path"].count("."), reverse=True)


def insert_after(model: nn.Module, path: str, layer: nn.Module) -> None:
    """Put ``layer`` after the module at ``path``: it becomes ``nn.Sequential(module, layer)``."""
    replace_module(model, path, nn.Sequential(model.get_submodule(path), layer))


def check_replaced_dropout(path: str, module: nn.Module, site: dict) -> None:
    """Raise if a recipe's ``"replace"`` site is not a dropout layer in the fresh network."""
    if site.get("action") == "replace" and not isinstance(module, nn.modules.dropout._DropoutNd):
        raise ValueError(
            f"the network's {path!r} is {type(module).__name__}, where the saved model "
            "replaced a dropout layer: pass the network the model was converted from"
        )


def attach_recipe(converted: EnsembleModel, recipe: dict,
                  example_input: torch.Tensor | None) -> EnsembleModel:
    """Give ``converted`` its ``recipe`` (what ``ek.load(path, into=net)`` replays), with the
    example input's shape and dtype (not its data) when one was given, so that
    ``compile_members`` and ``export`` need no second example."""
    if example_input is not None:
        recipe = {**recipe, "input": input_record(example_input)}
    converted.recipe = recipe
    return converted

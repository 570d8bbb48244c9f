"""``to_mc_dropout``: a network's dropout layers kept stochastic at inference, one seeded
pass per member (optionally with ``nn.Dropout`` layers inserted after chosen modules first)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_float, check_int, check_seed
from ..methods.mc_dropout import MCDropoutModel, dropout_modules
from ..methods.seeded_dropout import unseeded_dropouts
from ._sites import (
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


def _apply_mc_dropout(model: nn.Module, sites: list[dict]) -> None:
    """Insert each site's ``nn.Dropout(p)`` after its module in ``model``."""
    for site in deepest_first(sites):
        insert_after(model, site["path"], nn.Dropout(site["p"]))


def _uncalled_dropouts(model: nn.Module, plan: list[dict], example_input: torch.Tensor,
                       p: float) -> list[str]:
    """The dropout modules of ``model`` a dry forward on ``example_input`` never calls (warned
    about); raises when no called one, nor an inserted one, would draw noise."""
    dropouts = [path for path, m in model.named_modules()
                if isinstance(m, nn.modules.dropout._DropoutNd)]
    seen = shapes_from_dry_run(model, dropouts, [site["path"] for site in plan], example_input,
                               "to_mc_dropout", may_skip=dropouts)
    not_called = [path for path in dropouts if not seen[path]]
    called = [model.get_submodule(path) for path in dropouts if seen[path]]
    leave_uncalled(
        "to_mc_dropout", not_called,
        site_left=any(layer.p > 0 for layer in called) or (bool(plan) and p > 0),
        fix="no called dropout layer with p > 0 remains, so every stochastic pass would be the "
        "same: pass sites=[...] and p > 0 to insert nn.Dropout layers after chosen modules",
        stacklevel=4)
    return not_called


def to_mc_dropout(
    model: nn.Module,
    *,
    num_samples: int = 8,
    sites: Sites | None = None,
    p: float = 0.1,
    seed: int | None = None,
    example_input: torch.Tensor | None = None,
    task: str = "classification",
    num_outputs: int | None = None,
    noise: str | None = None,
) -> MCDropoutModel:
    """Keep ``model``'s dropout layers stochastic at inference: ``num_samples`` passes = members.

    With ``sites`` (module paths, or a predicate ``(path, module) -> bool``), an element-wise
    ``nn.Dropout(p)`` goes after each selected module first (the model's own dropout layers
    stay). The model then needs at least one dropout layer with ``p > 0``. Inference draws
    member m's masks from a generator seeded with ``seed`` (drawn from torch's generator when
    ``None``): ``predict_members`` is the same call after call and leaves the global RNG
    alone (:mod:`ensemblekit.methods.seeded_dropout`).

    Where to sample: the network's own dropout layers, where dropout goes
    (``placement="dropout"`` in ``build_model``: the tune grid measured dropout at every layer
    worse in 14 of 16 paired settings, issue 19); ``sites`` for a network without dropout,
    after its pooling or last hidden layers rather than after every layer.

    ``example_input`` (optional, a batch like the ones you will predict on): one dry forward
    finds dropout modules the network never calls (it applies that dropout functionally, e.g.
    attention dropout through ``F.dropout``): they do nothing, are left in place and listed in
    the recipe's ``"not_called"`` with a ``UserWarning``; if no called dropout layer with
    ``p > 0`` remains, a ``ValueError`` names them and suggests ``sites``. The recipe then
    keeps the input's shape and dtype (not its data), so ``compile_members(model)`` and
    ``export(model, path)`` need no second example.

    ``task="regression", num_outputs=D`` (and ``noise``) converts a regression network
    (:mod:`ensemblekit.convert.regression`): it outputs 2*D values per example (means, raw
    variances), or D means with ``noise="homoscedastic"`` (one learned variance per output).
    """
    model = check_module(model)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    p = check_float("p", p, minimum=0.0, maximum=1.0, max_inclusive=False)
    task_of = task_options("to_mc_dropout", task, num_outputs, noise)
    check_outputs("to_mc_dropout", model, task_of, example_input)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    seed = check_seed(seed)
    plan = []
    if sites is not None:
        chosen = select_sites(model, sites, "to_mc_dropout")
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
    not_called = [] if example_input is None else _uncalled_dropouts(model, plan, example_input, p)
    _apply_mc_dropout(model, plan)
    converted = as_task(MCDropoutModel(model, num_samples, seed=seed), task_of)
    recipe = {"converter": "to_mc_dropout", "num_samples": num_samples, "seed": seed,
              "sites": plan, "not_called": not_called, **task_of.recipe()}
    return attach_recipe(converted, recipe, example_input)


def mc_dropout_from_recipe(model: nn.Module, recipe: dict, sites: list[dict]) -> MCDropoutModel:
    """The model ``to_mc_dropout`` made, rebuilt on a fresh ``model`` from its ``recipe``."""
    _apply_mc_dropout(model, sites)
    return MCDropoutModel(model, recipe["num_samples"], seed=recipe["seed"])

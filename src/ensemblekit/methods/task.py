"""What a model predicts, chosen once when it is built: class logits or Gaussian members.

``task="classification"`` (the default): the backbone's head writes K logits per member and
:func:`~ensemblekit.methods.predict_members` returns them, ``(M, B, K)``.

``task="regression"`` with ``num_outputs=D``: the same backbone is built with a head of 2*D
outputs per member -- D means, then D raw variances -- and every method runs it unchanged
(the head is its last layer whatever the method does around it). :func:`gaussian_outputs` is
the one place that reads those raw outputs as a Gaussian: ``mean = raw[..., :D]``,
``variance = positive_variance(raw[..., D:])`` (softplus + 1e-6, :mod:`ensemblekit.losses`),
so ``predict_members`` returns :class:`~ensemblekit.members.GaussianMembers`, each
``(M, B, D)``, and training reads the same split of ``model(x)``'s rows.

A model says which task it has through :func:`model_task` (its ``task`` attribute; a plain
module or an older model without one is a classifier) and :func:`model_num_outputs`.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_int, check_tensor
from ..losses import positive_variance
from ..members import GaussianMembers

#: the tasks a model can be built for
TASKS = ("classification", "regression")


def model_task(model: nn.Module) -> str:
    """``model.task``: ``"regression"`` for a model built or converted with
    ``task="regression"``, ``"classification"`` otherwise (plain modules included)."""
    return getattr(model, "task", "classification")


def model_num_outputs(model: nn.Module) -> int | None:
    """D, the regression targets per example of a regression model; None for a classifier."""
    return getattr(model, "num_outputs", None)


def head_size(task: str, num_classes, num_outputs, *, where: str = "build_model") -> int:
    """The number of values the backbone's head writes per member: K logits for
    classification, 2*D (means, raw variances) for regression. Raises a ``ValueError`` naming
    the argument and the fix when ``num_classes`` / ``num_outputs`` do not fit ``task``."""
    task = check_choice("task", task, TASKS)
    if task == "classification":
        if num_outputs is not None:
            raise ValueError(
                f"{where}: num_outputs={num_outputs!r} applies to task='regression' only; pass "
                "task='regression' for Gaussian outputs, or drop num_outputs and give "
                "num_classes for classification")
        if num_classes is None:
            raise ValueError(f"{where}: num_classes is missing: a classifier needs "
                             "num_classes=K logits (or pass task='regression', num_outputs=D)")
        return check_int("num_classes", num_classes, minimum=1)
    if num_classes is not None:
        raise ValueError(
            f"{where}: num_classes={num_classes!r} does not apply to task='regression' (the "
            "head writes a mean and a variance per output); drop num_classes and pass "
            "num_outputs=D, the number of regression targets")
    if num_outputs is None:
        raise ValueError(f"{where}: task='regression' needs num_outputs=D, the number of "
                         "regression targets per example (1 for a scalar target)")
    return 2 * check_int("num_outputs", num_outputs, minimum=1)


def set_task(model: nn.Module, task: str, num_outputs: int | None) -> nn.Module:
    """Mark ``model`` as a ``task`` model (``model.task``, ``model.num_outputs``)."""
    model.task = check_choice("task", task, TASKS)
    model.num_outputs = num_outputs
    return model


def gaussian_outputs(raw: torch.Tensor, num_outputs: int) -> GaussianMembers:
    """Raw head outputs ``(..., 2*D)`` -> ``GaussianMembers(means (..., D), variances (..., D))``:
    the first D values are the means, the last D the raw variances through
    ``positive_variance`` (softplus + 1e-6). Works on member outputs ``(M, B, 2D)`` and on
    training rows ``(rows, 2D)`` alike."""
    check_tensor("raw", raw)
    if raw.ndim == 0 or raw.shape[-1] != 2 * num_outputs:
        got = "a 0-dimensional tensor" if raw.ndim == 0 else f"{raw.shape[-1]} values"
        raise ValueError(
            f"a regression model with num_outputs={num_outputs} needs {2 * num_outputs} "
            f"outputs per row (means, then raw variances), got {got} (shape "
            f"{tuple(raw.shape)}); build the network's last layer with 2 * num_outputs outputs")
    return GaussianMembers(raw[..., :num_outputs], positive_variance(raw[..., num_outputs:]))

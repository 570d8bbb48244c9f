"""A user's regression network converted: what every converter does for ``task="regression"``.

A converter given ``task="regression", num_outputs=D`` takes a network that outputs, per
example, either

* ``noise=None`` (default): 2*D values -- D means, then D raw variances (read through
  ``positive_variance``, softplus + 1e-6, as a ``build_model`` regression head), or
* ``noise="homoscedastic"``: D means only; the converted model adds one learned raw variance
  per output (:class:`HomoscedasticNoise`, initialised to a variance of 1, the standardised
  targets'), shared by every example and every member.

The converted model is then a regression model like one from ``build_model``:
``predict_members`` returns ``GaussianMembers``, ``train_model`` trains it on float targets,
and its recipe records ``task``, ``num_outputs`` and ``noise`` so that
``ek.load(path, into=network)`` rebuilds it. A classifier's recipe is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_choice, check_int, check_tensor
from ..losses import inverse_positive_variance
from ..methods.base import EnsembleModel
from ..methods.task import TASKS, set_task
from ..runtime import eval_mode

#: how a converted regression network gets its variances besides from its own outputs
#: (``noise=None``): one learned value per output
NOISE = ("homoscedastic",)


class HomoscedasticNoise(nn.Module):
    """``network``'s means ``(B, D)`` followed by one learned raw variance per output:
    ``(B, ...) -> (B, 2D)``, the layout of a regression head.

    ``raw_variance`` ``(D,)`` starts where ``positive_variance`` gives 1.
    """

    def __init__(self, network: nn.Module, num_outputs: int) -> None:
        super().__init__()
        self.network = network
        self.num_outputs = num_outputs
        self.raw_variance = nn.Parameter(inverse_positive_variance(torch.ones(num_outputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means = self.network(x)
        if means.ndim == 0 or means.shape[-1] != self.num_outputs:
            raise ValueError(
                f"noise='homoscedastic' needs a network that outputs num_outputs="
                f"{self.num_outputs} means per example, got shape {tuple(means.shape)}; give "
                "its last layer num_outputs outputs (or 2 * num_outputs with noise=None)")
        return torch.cat([means, self.raw_variance.to(means.dtype).expand_as(means)], dim=-1)


@dataclass(frozen=True)
class TaskOptions:
    """A converter's task arguments, checked."""

    task: str = "classification"
    num_outputs: int | None = None
    noise: str | None = None

    def recipe(self) -> dict:
        """The recipe's task keys: none for a classifier (its recipe is unchanged)."""
        if self.task == "classification":
            return {}
        return {"task": self.task, "num_outputs": self.num_outputs, "noise": self.noise}


def task_options(converter: str, task: str, num_outputs, noise) -> TaskOptions:
    """Check a converter's ``task``, ``num_outputs`` and ``noise`` arguments together."""
    task = check_choice("task", task, TASKS)
    if task == "classification":
        if num_outputs is not None or noise is not None:
            given = "num_outputs" if num_outputs is not None else "noise"
            value = num_outputs if num_outputs is not None else noise
            raise ValueError(
                f"{converter}: {given}={value!r} applies to task='regression' only; pass "
                "task='regression' to convert a regression network")
        return TaskOptions()
    if num_outputs is None:
        raise ValueError(
            f"{converter}: task='regression' needs num_outputs=D, the number of regression "
            "targets (the network outputs 2*D values: D means, then D raw variances; or D "
            "means with noise='homoscedastic')")
    num_outputs = check_int("num_outputs", num_outputs, minimum=1)
    if noise is not None:
        noise = check_choice("noise", noise, NOISE)
    return TaskOptions(task, num_outputs, noise)


def check_outputs(converter: str, model: nn.Module, options: TaskOptions,
                  example_input: torch.Tensor | None) -> None:
    """With an ``example_input``, run the unconverted regression network once (eval mode, no
    gradients) and raise unless it writes the values ``options`` needs per example."""
    if options.task == "classification" or example_input is None:
        return
    check_tensor("example_input", example_input)
    with eval_mode(model), torch.no_grad():
        output = model(example_input)
    want = options.num_outputs * (1 if options.noise else 2)
    if not isinstance(output, torch.Tensor) or output.ndim < 2 or output.shape[-1] != want:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        layout = ("D means (noise='homoscedastic')" if options.noise
                  else "D means then D raw variances")
        raise ValueError(
            f"{converter}: with num_outputs={options.num_outputs} the network must output "
            f"{want} values per example ({layout}), got {shape} on example_input; fix its "
            "last layer, num_outputs, or noise")


def as_task(converted: EnsembleModel, options: TaskOptions) -> EnsembleModel:
    """``converted`` made a ``options.task`` model: marked, and for homoscedastic noise its
    network wrapped in :class:`HomoscedasticNoise` (keys ``backbone.network.*`` and
    ``backbone.raw_variance``)."""
    if options.task == "classification":
        return converted
    if options.noise == "homoscedastic":
        converted.backbone = HomoscedasticNoise(converted.backbone, options.num_outputs)
    return set_task(converted, options.task, options.num_outputs)


def recipe_task_options(recipe: dict) -> TaskOptions:
    """The task options a recipe records (a classifier's recipe records none)."""
    return task_options(recipe.get("converter", "recipe"), recipe.get("task", "classification"),
                        recipe.get("num_outputs"), recipe.get("noise"))

"""What one training step minimises and which training metric it reports, per task.

The loop calls ``objective(outputs, targets, epoch)`` on the rows of ``model(x)`` and their
``model.training_targets(y)``, and gets back ``(loss, metric sum)``; the epoch record reports
``objective.summary(metric sum, rows)`` under ``objective.metric``:

- :class:`Classification`: cross-entropy of the logits; metric ``"accuracy"`` (correct rows
  over rows).
- :class:`Regression`: the config's Gaussian loss of the raw outputs read by
  :func:`~ensemblekit.methods.task.gaussian_outputs` (``"mse"`` during ``mse_warmup_epochs``,
  then ``loss``; :mod:`ensemblekit.losses`); metric ``"rmse"`` of the members' means against
  the targets over every row and output (each member on its own rows, in the targets' units).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import regression_loss
from ..methods.task import gaussian_outputs, model_num_outputs, model_task
from .config import TrainConfig


class Classification:
    """Cross-entropy; accuracy."""

    metric = "accuracy"

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, epoch: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``logits`` (rows, K), ``targets`` (rows,) int64 -> (mean loss, correct rows)."""
        loss = F.cross_entropy(logits.float(), targets)
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets).sum()
        return loss, correct

    def summary(self, correct: float, rows: float) -> float:
        return correct / rows


class Regression:
    """The config's Gaussian loss (MSE during the warm-up); RMSE of the means."""

    metric = "rmse"

    def __init__(self, num_outputs: int, config: TrainConfig) -> None:
        self.num_outputs = num_outputs
        self.config = config

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor, epoch: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``outputs`` (rows, 2D), ``targets`` (rows, D) float -> (mean loss, squared error
        summed over rows and outputs)."""
        mean, variance = gaussian_outputs(outputs.float(), self.num_outputs)
        loss = regression_loss(mean, variance, targets, loss=self.config.regression_loss(epoch),
                               beta=self.config.beta)
        with torch.no_grad():
            squared = (mean - targets).square().sum()
        return loss, squared

    def summary(self, squared: float, rows: float) -> float:
        return math.sqrt(squared / (rows * self.num_outputs))


def objective_for(model: nn.Module, config: TrainConfig) -> Classification | Regression:
    """The objective of ``model``'s task (:func:`~ensemblekit.methods.task.model_task`)."""
    if model_task(model) == "regression":
        return Regression(model_num_outputs(model), config)
    return Classification()


def check_task_fields(model: nn.Module, config: TrainConfig) -> None:
    """Refuse regression fields set for a classifier (they would be silently ignored)."""
    fields = config.regression_fields()
    if fields and model_task(model) != "regression":
        shown = ", ".join(f"{name}={value!r}" for name, value in fields.items())
        raise ValueError(
            f"TrainConfig {shown} applies to regression models (build_model(..., "
            "task='regression', num_outputs=D)); this model is a classifier and trains with "
            "cross-entropy: leave loss, beta and mse_warmup_epochs at their defaults")

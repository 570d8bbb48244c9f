"""The training steps every experiment shares: build a method's model under the settings,
refuse a batch size it cannot take, train it.

What a run reads is :mod:`~ensemblekit.experiments.splits`; how a trained model is scored
(one inference pass per split) is :mod:`~ensemblekit.experiments.protocol`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..data import dataset_info
from ..methods import build_model
from ..train import check_batch_size as check_model_batch_size
from ..train import train_model
from .config import Settings
from .splits import ExperimentData

#: What the last training epoch reports beside its loss: a classifier's accuracy, a regression
#: model's RMSE.
TRAINING_FIT = ("accuracy", "rmse")


def build(settings: Settings, method: str, *, seed: int, **options):
    """``build_model`` of ``settings.backbone`` as ``method`` (``options`` override)."""
    info = dataset_info(settings.dataset)
    chosen = {**settings.model_options(method, seed=seed), **options}
    if info.is_regression:  # a Gaussian head per member: D means and D variances
        return build_model(settings.backbone, method, None, info.in_channels,
                           task="regression", num_outputs=info.num_outputs, **chosen)
    return build_model(settings.backbone, method, info.num_classes, info.in_channels, **chosen)


def check_batch_size(settings: Settings, model) -> None:
    """Refuse, before training, a batch size that the model's member groups do not divide."""
    check_model_batch_size(model, settings.train_config(seed=0).batch_size,
                           use="--batch-size {} (or change --members)")


def train(settings: Settings, model, data: ExperimentData, *, seed: int,
          checkpoint_dir: Path | None = None) -> dict:
    """Train ``model`` in place; return ``{"seconds", "loss", "accuracy", "epochs"}``: the
    training loss and accuracy of the last epoch (the fit that under-fitting shows in; a
    regression model's RMSE on its training rows, standardised, in place of the accuracy).

    The validation split goes to the trainer only when early stopping watches it: otherwise
    it would cost an evaluation pass per epoch that nothing reads.
    """
    started = time.perf_counter()
    # the model's own method decides its epochs ([method_options.<method>] epochs)
    config = settings.train_config(seed=seed, method=getattr(model, "method", None))
    validation = data.validation if config.early_stopping_patience is not None else None
    history = train_model(model, data.train, config, checkpoint_dir=checkpoint_dir,
                          resume=checkpoint_dir is not None, validation_data=validation)
    fit = {"seconds": time.perf_counter() - started, "loss": history[-1]["loss"]}
    for metric in TRAINING_FIT:  # a classifier's epochs record accuracy, a regressor's RMSE
        if metric in history[-1]:
            fit[metric] = history[-1][metric]
    return {**fit, "epochs": len(history)}

"""Validation accuracy after every epoch, and early stopping on it.

The monitored metric is the accuracy of the ensemble's prediction (argmax of the members' mean
probability) on held-out data -- for a regression model the NLL of the members' mixture
(``"val_nll"``, lower is better; :func:`~ensemblekit.metrics.mixture_nll`'s definition: nats
per example, summed over the D outputs); training stops once ``patience`` epochs in a row bring
no strict improvement on the best so far, and the best epoch's weights (the first, on ties) can
be restored at the end.
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods.base import EnsembleModel, predict_members
from ..methods.task import model_task
from ..metrics.gaussian import mixture_log_prob
from ..predict import predict
from .batches import TrainingData
from .config import Transform

#: Held-out examples per forward pass while scoring an epoch.
VALIDATION_BATCH = 1000


def validation_accuracy(model: nn.Module, validation: TrainingData, normalize: Transform | None,
                        device: torch.device, num_workers: int = 0) -> float:
    """Accuracy of ``model`` on held-out data through the one inference loop
    (:func:`ensemblekit.predict.predict`, streamed in batches of 1000, nothing kept): the argmax
    of the members' mean probability for an ensemble model, of the logits otherwise. Eval mode,
    no gradients, and forked RNG streams, so that stochastic members (MC-Dropout) leave
    training's untouched.
    """
    indices = list(torch.arange(len(validation)).split(VALIDATION_BATCH))
    correct = 0

    def count(logits: torch.Tensor, labels: torch.Tensor) -> None:
        """``logits`` (M, B, K), ``labels`` (B,)."""
        nonlocal correct
        if isinstance(model, EnsembleModel):
            scores = logits.float().softmax(-1).mean(0)
        else:  # one plain module: predict gives it a member axis of 1
            scores = logits[0]
        correct += int((scores.argmax(-1) == labels).sum())

    predict(model, validation.batches(indices, device, num_workers), normalize=normalize,
            batch_size=VALIDATION_BATCH, keep=False, on_batch=count)
    return correct / len(validation)


def validation_nll(model: EnsembleModel, validation: TrainingData,
                   normalize: Transform | None, device: torch.device,
                   num_workers: int = 0) -> float:
    """Mean NLL (nats per example) of a regression model's member mixture on held-out data:
    ``-mean_b log (1/M) sum_m N(y_b; mu_mb, s2_mb)``, streamed in batches of 1000 through
    ``predict_members`` (eval mode, no gradients, forked RNG streams as
    :func:`validation_accuracy`)."""
    indices = list(torch.arange(len(validation)).split(VALIDATION_BATCH))
    total = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            torch.no_grad():
        for inputs, targets in validation.batches(indices, device, num_workers):
            inputs = normalize(inputs) if normalize is not None else inputs
            members = predict_members(model, inputs)
            total -= float(mixture_log_prob(*members, targets).sum())
    return total / len(validation)


def validation_record(model: nn.Module, validation: TrainingData, normalize: Transform | None,
                      device: torch.device, num_workers: int = 0) -> dict:
    """``{"val_accuracy": ...}`` for a classifier, ``{"val_nll": ...}`` for a regression model:
    the monitored metric of one epoch (:data:`MONITORED`)."""
    if model_task(model) == "regression":
        return {"val_nll": validation_nll(model, validation, normalize, device, num_workers)}
    return {"val_accuracy": validation_accuracy(model, validation, normalize, device,
                                                num_workers)}


#: the monitored validation metrics and their sign: +1 higher is better, -1 lower is better
MONITORED = {"val_accuracy": 1.0, "val_nll": -1.0}


def best_epoch(history: list[dict]) -> int | None:
    """The epoch (1-based) of the best monitored validation metric (highest accuracy, lowest
    NLL), the first on ties."""
    for key, sign in MONITORED.items():
        scored = [record for record in history if key in record]
        if scored:
            return max(scored, key=lambda record: (sign * record[key], -record["epoch"]))["epoch"]
    return None


def patience_ran_out(history: list[dict], patience: int | None) -> bool:
    """True once ``patience`` epochs have passed without beating the best validation metric."""
    best = best_epoch(history) if patience is not None else None
    return best is not None and history[-1]["epoch"] - best >= patience


def keep_if_best(model: nn.Module, history: list[dict], best_state: dict | None,
                 restore_best: bool) -> dict | None:
    """The weights to restore at the end: a CPU copy of ``model``'s if the last record of
    ``history`` is the best epoch so far (and ``restore_best``), else ``best_state``."""
    if best_epoch(history) == history[-1]["epoch"] and restore_best:
        return {key: value.detach().to("cpu", copy=True)
                for key, value in model.state_dict().items()}
    return best_state

"""Validation accuracy after every epoch, and early stopping on it.

The monitored metric is the accuracy of the ensemble's prediction (argmax of the members' mean
probability) on held-out data; training stops once ``patience`` epochs in a row bring no strict
improvement on the best so far, and the best epoch's weights (the first, on ties) can be
restored at the end.
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods.base import EnsembleModel
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


def best_epoch(history: list[dict]) -> int | None:
    """The epoch (1-based) of the highest validation accuracy, the first on ties."""
    scored = [record for record in history if "val_accuracy" in record]
    if not scored:
        return None
    return max(scored, key=lambda record: (record["val_accuracy"], -record["epoch"]))["epoch"]


def patience_ran_out(history: list[dict], patience: int | None) -> bool:
    """True once ``patience`` epochs have passed without beating the best validation accuracy."""
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

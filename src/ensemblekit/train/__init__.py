"""Training: one loop for every method (:func:`train_model`) and how it is configured.

- :mod:`.config`: :class:`TrainConfig` and its choices (optimizers, schedules, precisions);
- :mod:`.loop`: :func:`train_model`, the epochs and the optimizer steps;
- :mod:`.batches`: which rows each batch holds, on which process, as which tensors;
- :mod:`.optim`: the optimizer, the learning-rate schedule, the gradient scaler;
- :mod:`.resume`: the checkpoint after every epoch and exact resumption from it;
- :mod:`.early_stopping`: the validation accuracy after every epoch and stopping on it.
"""

from ..runtime import MAX_THREADS, cpu_threads
from .batches import check_batch_size, epoch_batches, shard
from .config import MAX_LR, OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig
from .early_stopping import validation_accuracy
from .loop import train_model
from .optim import lr_factor
from .resume import CHECKPOINT_NAME

__all__ = [
    "CHECKPOINT_NAME",
    "MAX_LR",
    "MAX_THREADS",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "TrainConfig",
    "check_batch_size",
    "cpu_threads",
    "epoch_batches",
    "lr_factor",
    "shard",
    "train_model",
    "validation_accuracy",
]

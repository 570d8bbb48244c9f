"""One training loop for every method: :func:`train_model`.

Every method trains through the same contract::

    model.train(); logits = model(x); loss = F.cross_entropy(logits, model.training_targets(y))

(a regression model: a Gaussian loss of ``gaussian_outputs(model(x), D)`` against the float
targets, :mod:`.objective`), so this file knows nothing about masks, fast weights or members.
What it does, step by step: check the call, choose the device, check the data
(:mod:`.batches`), join the process group, seed, build the optimisation (:mod:`.optim`),
resume from the last checkpoint (:mod:`.resume`), wrap the model for
``DistributedDataParallel`` and ``torch.compile``, then run the epochs: augment and normalise
each batch on the device, one optimizer step per batch (mixed precision on CUDA: bf16, or fp16
with a gradient scaler; fp32 on CPU), a checkpoint after every epoch, and optionally the
validation accuracy (regression: NLL) and early stopping
on it (:mod:`.early_stopping`).

``TrainConfig.batch_size`` is the global batch: K processes each take ``batch_size / K`` rows of
the same permuted batch, so a run's optimisation does not depend on how many processes run it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .. import distributed
from ..runtime import choose_device, torch_settings
from ..seeding import seed_everything
from .batches import (
    TrainingData,
    check_batch_size,
    checked_data,
    data_hooks,
    epoch_batches,
    shard,
    steps_per_epoch,
    training_targets,
)
from .config import TrainConfig, Transform
from .early_stopping import keep_if_best, patience_ran_out, validation_record
from .objective import Classification, Regression, check_task_fields, objective_for
from .optim import Optimisation, build_optimisation
from .resume import CHECKPOINT_NAME, resume_from, save_checkpoint

#: the progress bar's names of the training metrics
_SHORT = {"accuracy": "acc"}


def train_model(
    model: nn.Module,
    train_data: Dataset | tuple[torch.Tensor, torch.Tensor],
    config: TrainConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    validation_data: Dataset | tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[dict]:
    """Train ``model`` in place on ``train_data``; return one record per epoch.

    Args:
        model: a model from :func:`ensemblekit.methods.build_model` (any ``nn.Module`` mapping
            ``(B, ...)`` to logits also works: it then trains as a single model).
        train_data: ``(images, labels)`` tensors -- images ``(N, ...)`` (in [0, 1] when
            augmentation or normalisation hooks are set), labels ``(N,)`` integer -- or any
            ``Dataset`` of ``(image, label)`` pairs. For a regression model the labels are
            float targets ``(N, D)`` (or ``(N,)`` when D = 1).
        config: how to train.
        checkpoint_dir: where ``last.pt`` is written after every epoch (main process only).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists; the result is the same
            as an uninterrupted run.
        validation_data: held-out ``(images, labels)`` (or a Dataset), in the form of
            ``train_data``: its accuracy is measured after every epoch (eval mode, normalised,
            not augmented; the global RNG streams of training are left untouched, so training
            is the same with or without it) and drives ``config.early_stopping_patience``;
            for a regression model, the NLL of its members' mixture instead.

    Training seeds the global generators (Python, NumPy, torch) with ``config.seed`` (plus the
    process rank under ``torchrun``) and draws the data order from its own generator seeded
    with ``config.seed``; the model's initialisation is the caller's (``build_model(seed=)``).

    Returns:
        ``[{"epoch", "loss", "accuracy", "lr", "seconds"}, ...]``: the mean training loss and
        accuracy (over all processes) of each epoch, the learning rate it ended with, and its
        wall time; with ``validation_data`` also ``"val_accuracy"``. A regression model's
        records hold ``"rmse"`` (of the members' means on the training rows) in place of
        ``"accuracy"``, ``"val_nll"`` in place of ``"val_accuracy"`` and ``"objective"`` (the
        loss of that epoch: ``"mse"`` during the warm-up). Training stopped early returns
        fewer records than ``config.epochs``.
    """
    _check_call(model, config, checkpoint_dir, resume, validation_data)
    device = choose_device(config.device, local_rank=distributed.local_rank())
    batch_unit = check_batch_size(model, config.batch_size,
                                  processes=distributed.launched_world_size())
    augment, normalize = data_hooks(config)
    data, validation = checked_data(model, train_data, validation_data, augment, normalize)
    context = distributed.setup(device)

    model.to(device)
    seed_everything(config.seed + context.rank)  # ranks draw different dropout/augmentation
    data_order = torch.Generator().manual_seed(config.seed)  # identical on every rank
    steps = steps_per_epoch(len(data), config.batch_size, batch_unit)
    optimisation = build_optimisation(model, config, steps, device)

    history: list[dict] = []
    start_epoch = 0
    best_state = None  # the best epoch's weights (CPU), kept for restore_best
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if resume and checkpoint_path.is_file():
        start_epoch, history, best_state = resume_from(
            checkpoint_path, model, optimisation, data_order, config, context
        )

    epochs = _Epochs(model, _wrapped(model, device, context, config), config, data, batch_unit,
                     data_order, optimisation, augment, normalize, context, device,
                     objective_for(model, config))
    settings = torch_settings(deterministic=config.deterministic, threads=config.threads)
    with settings, _progress_bar(config, context, steps, start_epoch) as bar:
        for epoch in range(start_epoch, config.epochs):
            if patience_ran_out(history, config.early_stopping_patience):
                break
            record = epochs.run(epoch, bar)
            if validation is not None:
                record.update(validation_record(model, validation, normalize, device,
                                                config.num_workers))
                best_state = keep_if_best(model, history + [record], best_state,
                                          config.restore_best)
            history.append(record)
            metric = epochs.objective.metric
            bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.4f}",
                            **{_SHORT.get(metric, metric): f"{record[metric]:.4f}"})
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, model, optimisation, data_order, config,
                                epoch + 1, history, context, best_state)
    if config.early_stopping_patience is not None and config.restore_best \
            and best_state is not None:
        model.load_state_dict(best_state)
    return history


@dataclass
class _Epochs:
    """Everything an epoch of training reads, and the epoch itself."""

    model: nn.Module
    network: nn.Module  # the model, or its DistributedDataParallel / compiled wrapper
    config: TrainConfig
    data: TrainingData
    batch_unit: int
    data_order: torch.Generator
    optimisation: Optimisation
    augment: Transform | None
    normalize: Transform | None
    context: distributed.DistributedContext
    device: torch.device
    objective: Classification | Regression

    def __post_init__(self) -> None:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.precision)
        self.autocast = dict(device_type=self.device.type, dtype=dtype,
                             enabled=dtype is not None and self.device.type == "cuda")

    def run(self, epoch: int, bar: tqdm) -> dict:
        """Train epoch ``epoch`` (0-based); return its record (as :func:`train_model` returns them).

        Raises ``ValueError`` if the loss is not finite (before the epoch's checkpoint is
        written, so ``last.pt`` keeps the last finite epoch).
        """
        started = time.perf_counter()
        self.network.train()
        batches, groups = epoch_batches(self.model, len(self.data), self.config.batch_size,
                                        self.batch_unit, self.data_order, epoch, self.config.seed)
        local = [shard(batch, groups, self.context) for batch in batches]
        # Sums stay on the device (no host sync per step) and are reduced over processes.
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        for x, y in self.data.batches(local, self.device, self.config.num_workers):
            totals += self.step(x, y, epoch)
            bar.update(1)
        loss_sum, metric_sum, rows = distributed.all_reduce_sum(totals, self.context).tolist()
        if not math.isfinite(loss_sum):
            raise ValueError(
                f"training diverged in epoch {epoch + 1}: the mean loss is "
                f"{loss_sum / rows}; lower the learning rate (lr={self.config.lr:g}) or "
                f"weight_decay ({self.config.weight_decay:g}), or check the training data for "
                "NaN/inf values"
            )
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / rows,
            self.objective.metric: self.objective.summary(metric_sum, rows),
            "lr": self.optimisation.lr,
            "seconds": time.perf_counter() - started,
        }
        if isinstance(self.objective, Regression):
            record["objective"] = self.config.regression_loss(epoch)
        return record

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        """One optimizer step on images ``x`` (B, ...) and labels ``y`` (B,) (regression:
        targets (B, D)); returns ``(loss sum, metric sum, rows)`` (float64, 3) over the rows
        of the model's outputs (:mod:`.objective`)."""
        if self.augment is not None:
            x = self.augment(x)
        if self.normalize is not None:
            x = self.normalize(x)
        with torch.autocast(**self.autocast):
            outputs = self.network(x)
            targets = training_targets(self.model, y)
            loss, metric = self.objective(outputs, targets, epoch)
        self.optimisation.step(loss)
        with torch.no_grad():
            rows = len(targets)
            return torch.stack([loss.detach().double() * rows, metric.double(),
                                loss.new_full((), rows, dtype=torch.float64)])


def _check_call(model, config, checkpoint_dir, resume, validation_data) -> None:
    """Refuse, before any work, arguments of :func:`train_model` that cannot work together."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder holding last.pt)")
    if checkpoint_dir is not None and Path(checkpoint_dir).exists() \
            and not Path(checkpoint_dir).is_dir():
        raise ValueError(f"checkpoint_dir {checkpoint_dir} is a file; pass a folder (it is "
                         "created if missing) where last.pt is written")
    if config.early_stopping_patience is not None and validation_data is None:
        raise ValueError(
            f"early_stopping_patience={config.early_stopping_patience} monitors the validation "
            "accuracy (regression: NLL): pass validation_data=(images, labels) to train_model, "
            "or set early_stopping_patience=None")
    check_task_fields(model, config)


def _wrapped(model: nn.Module, device: torch.device, context: distributed.DistributedContext,
             config: TrainConfig) -> nn.Module:
    """``model`` as the training steps call it: under ``DistributedDataParallel`` when several
    processes train, compiled with ``torch.compile`` when ``config.compile``."""
    network = model
    if context.is_distributed:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if config.compile:
        network = torch.compile(network)
    return network


def _progress_bar(config: TrainConfig, context: distributed.DistributedContext, steps: int,
                  start_epoch: int) -> tqdm:
    """A bar over every step of the run (on the main process, when ``config.progress``)."""
    show = config.progress and context.is_main
    return tqdm(total=config.epochs * steps, initial=start_epoch * steps, desc="train",
                unit="step", disable=not show, dynamic_ncols=True)

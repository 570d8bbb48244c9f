"""The optimizer, its learning-rate schedule and the gradient scaler of one training run."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig


@dataclass
class Optimisation:
    """What updates the weights: the optimizer, its per-batch schedule, the fp16 loss scaler
    (a no-op unless training in fp16 on CUDA). Their states are checkpointed together."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def step(self, loss: torch.Tensor) -> None:
        """One update from ``loss`` (a scalar): backward, optimizer step, schedule step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group, as the schedule has set it."""
        return self.optimizer.param_groups[0]["lr"]


def build_optimisation(model: nn.Module, config: TrainConfig, steps_per_epoch: int,
                       device: torch.device) -> Optimisation:
    """The optimizer of ``config`` over ``model``'s parameters, its schedule stepped every batch
    (``steps_per_epoch`` batches an epoch), and a gradient scaler for fp16 on CUDA."""
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config, steps_per_epoch)
    )
    fp16 = device.type == "cuda" and config.precision == "fp16"
    return Optimisation(optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=fp16))


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over ``model.parameter_groups`` (BatchEnsemble's fast weights get
    their own decay and learning rate), or over every trainable parameter of a plain module."""
    if hasattr(model, "parameter_groups"):
        groups = model.parameter_groups(
            weight_decay=config.weight_decay, lr=config.lr,
            fast_weight_lr_multiplier=config.fast_weight_lr_multiplier,
            fast_weight_decay=config.fast_weight_decay)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """The multiplier of the base learning rate after ``step`` optimizer steps."""
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if config.schedule == "multistep":
        epoch = step // steps_per_epoch
        return config.gamma ** sum(epoch >= milestone for milestone in config.milestones)
    if config.schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0

"""One training loop for every method.

Every method trains through the same contract::

    model.train(); logits = model(x); loss = F.cross_entropy(logits, model.training_targets(y))

so this file knows nothing about masks, fast weights or members. What it does:

- batches in-memory tensors by indexing (no per-item Python work), other datasets through a
  ``DataLoader`` fed the same index batches;
- augments, then normalises, each batch of [0, 1] images on the training device;
- SGD (momentum, Nesterov), AdamW or Adam over ``model.parameter_groups``, with a multistep,
  cosine or constant learning-rate schedule stepped every batch, optional linear warm-up;
- mixed precision on CUDA (bf16, or fp16 with a gradient scaler); plain fp32 on CPU;
- under ``torchrun``, ``DistributedDataParallel`` with the epoch's permutation sharded by rank;
- a checkpoint after every epoch (atomic), and exact resumption from it;
- optionally, the validation accuracy after every epoch and early stopping on it.

``TrainConfig.batch_size`` is the global batch: K processes each take ``batch_size / K`` rows of
the same permuted batch, so a run's optimisation does not depend on how many processes run it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import checkpoint, distributed
from ._validation import (
    check_choice,
    check_device,
    check_finite,
    check_flag,
    check_float,
    check_int,
    check_seed,
    check_sequence,
    check_tensor,
)
from .samplers import MemberBatchSampler
from .seeding import get_rng_state, seed_everything, set_rng_state

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("multistep", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
CHECKPOINT_NAME = "last.pt"
#: Upper bound of every learning rate a schedule reaches (and of weight_decay): beyond it
#: float32 updates overflow ("value cannot be converted to type float") instead of training.
MAX_LR = 1e6
#: More threads than cores only wait on each other; far more exhaust memory for stacks.
MAX_THREADS = os.cpu_count() or 1

# Fields that may change between a run and its resumption without changing what it computes.
_RESUMABLE_CHANGES = ("progress", "compile", "device", "threads", "num_workers")

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TrainConfig:
    """Everything that decides how a model is trained. Checked when constructed.

    Learning-rate schedule (stepped every batch): ``"multistep"`` multiplies ``lr`` by ``gamma``
    at each epoch in ``milestones``; ``"cosine"`` anneals from ``lr`` to 0 over the run;
    ``"constant"`` keeps ``lr``. Any of them can start with ``warmup_epochs`` of linear warm-up.

    Data hooks: ``augment`` and ``normalize`` map a batch of [0, 1] images ``(B, C, H, W)``,
    already on the training device, to a batch of the same shape; ``augment`` runs first and may
    use the global torch RNG (its state is checkpointed). Left as ``None`` with ``dataset`` set,
    they are looked up by name in :mod:`ensemblekit.data` (set ``augment=False`` to train a named
    dataset without augmentation); with neither, images go in unchanged.

    ``precision`` selects CUDA autocast (``"bf16"``, or ``"fp16"`` with a gradient scaler); on CPU
    training is always fp32. ``deterministic=True`` asks torch for deterministic kernels
    (slower on GPU; CPU runs are reproducible without it). ``threads`` sets torch's CPU threads
    while training (restored afterwards): small models on small batches (the digits benchmark)
    run several times faster with ``threads=1`` than with threads that wait on each other,
    above all on a busy machine; ``None`` keeps torch's setting.

    Optimizers: ``"adamw"`` decays weights decoupled from the gradient (Loshchilov & Hutter);
    ``"adam"`` adds ``weight_decay * w`` to the gradient (L2, ``torch.optim.Adam``), as code
    written for ``torch.optim.Adam(weight_decay=...)`` does.

    BatchEnsemble fast weights ``r``, ``s`` get ``fast_weight_decay`` and
    ``lr * fast_weight_lr_multiplier``: 0 and 0.5 by default, as in the reference
    implementation (decay pulls them towards 0, switching members off); code that puts them in
    one group with everything else uses ``fast_weight_decay = weight_decay`` and multiplier 1.

    Early stopping (``early_stopping_patience``, needs ``validation_data`` in
    :func:`train_model`): the monitored metric is the validation accuracy of the ensemble's
    prediction (argmax of the members' mean probability), measured after every epoch; training
    stops once ``early_stopping_patience`` epochs in a row bring no strict improvement on the
    best so far, or at ``epochs``. ``restore_best=True`` (default) then loads the weights of
    the best epoch (the first, on ties) into the model; ``False`` keeps the last epoch's. The
    schedule is laid out over ``epochs`` whether or not training stops early (milestones keep
    their epochs).
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    precision: str = "bf16"
    seed: int = 0
    compile: bool = False
    deterministic: bool = False
    progress: bool = True
    device: str | None = None
    threads: int | None = None
    num_workers: int = 0
    dataset: str | None = None
    augment: Transform | bool | None = None
    normalize: Transform | None = None
    early_stopping_patience: int | None = None
    restore_best: bool = True
    fast_weight_decay: float = 0.0
    fast_weight_lr_multiplier: float = 0.5

    def __post_init__(self) -> None:
        self.epochs = check_int("epochs", self.epochs, minimum=1)
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        self.lr = check_float("lr", self.lr, minimum=0.0, maximum=MAX_LR, min_inclusive=False)
        self.momentum = check_float("momentum", self.momentum, minimum=0.0, maximum=1.0,
                                    max_inclusive=False)
        if self.early_stopping_patience is not None:
            self.early_stopping_patience = check_int(
                "early_stopping_patience", self.early_stopping_patience, minimum=1)
        for name in ("nesterov", "compile", "deterministic", "progress", "restore_best"):
            check_flag(name, getattr(self, name))
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9) or "
                             "nesterov=False")
        self.betas = tuple(
            check_float(f"betas[{i}]", beta, minimum=0.0, maximum=1.0, max_inclusive=False)
            for i, beta in enumerate(check_sequence("betas", self.betas))
        )
        if len(self.betas) != 2:
            raise ValueError(f"betas must hold two numbers, got {self.betas}")
        self.weight_decay = check_float("weight_decay", self.weight_decay, minimum=0.0,
                                        maximum=MAX_LR)
        self.fast_weight_decay = check_float("fast_weight_decay", self.fast_weight_decay,
                                             minimum=0.0, maximum=MAX_LR)
        self.fast_weight_lr_multiplier = check_float(
            "fast_weight_lr_multiplier", self.fast_weight_lr_multiplier, minimum=0.0,
            maximum=MAX_LR, min_inclusive=False)
        check_choice("schedule", self.schedule, SCHEDULES)
        milestones = check_sequence("milestones", self.milestones)
        self.milestones = tuple(
            check_int("milestones", m, minimum=1, maximum=self.epochs - 1)
            for m in milestones
        ) if self.schedule == "multistep" else tuple(milestones)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be strictly increasing epochs, got "
                             f"{list(self.milestones)}; sort them and drop repeats")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule='multistep' needs milestones (epochs at which lr is "
                             "multiplied by gamma), e.g. milestones=(25, 50)")
        self.gamma = check_float("gamma", self.gamma, minimum=0.0, maximum=MAX_LR,
                                 min_inclusive=False)
        if self.schedule == "multistep" and self.lr * max(1.0, self.gamma) ** len(
                self.milestones) > MAX_LR:
            raise ValueError(f"lr={self.lr:g} times gamma={self.gamma:g} at each of the "
                             f"{len(self.milestones)} milestones exceeds {MAX_LR:g}; lower gamma "
                             "(usually < 1) or lr")
        self.warmup_epochs = check_float("warmup_epochs", self.warmup_epochs, minimum=0.0,
                                         maximum=self.epochs, max_inclusive=False)
        check_choice("precision", self.precision, PRECISIONS)
        self.seed = check_seed(self.seed)
        self.num_workers = check_int("num_workers", self.num_workers, minimum=0)
        if self.threads is not None:
            self.threads = check_int("threads", self.threads, minimum=1, maximum=MAX_THREADS)
        if self.device is not None:
            check_device("device", self.device)
        if self.dataset is not None:
            from .data import available_datasets  # torchvision: only for named datasets

            check_choice("dataset", self.dataset, available_datasets())
        for name in ("augment", "normalize"):
            hook = getattr(self, name)
            if hook not in (None, False) and not callable(hook):
                raise ValueError(f"{name} must be a callable on image batches or None, got "
                                 f"{hook!r}")
        if self.normalize is False:
            raise ValueError("normalize=False is not a choice; use normalize=None")

    def to_dict(self) -> dict:
        """The config as JSON-friendly values (callables by qualified name)."""
        values = dataclasses.asdict(self)
        for name in ("augment", "normalize"):
            hook = values[name]
            if callable(hook):
                values[name] = getattr(hook, "__qualname__", type(hook).__qualname__)
        values["milestones"] = list(values["milestones"])
        values["betas"] = list(values["betas"])
        return values


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
            ``Dataset`` of ``(image, label)`` pairs.
        config: how to train.
        checkpoint_dir: where ``last.pt`` is written after every epoch (main process only).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists; the result is the same
            as an uninterrupted run.
        validation_data: held-out ``(images, labels)`` (or a Dataset), in the form of
            ``train_data``: its accuracy is measured after every epoch (eval mode, normalised,
            not augmented; the global RNG streams of training are left untouched, so training
            is the same with or without it) and drives ``config.early_stopping_patience``.

    Training seeds the global generators (Python, NumPy, torch) with ``config.seed`` (plus the
    process rank under ``torchrun``) and draws the data order from its own generator seeded
    with ``config.seed``; the model's initialisation is the caller's (``build_model(seed=)``).

    Returns:
        ``[{"epoch", "loss", "accuracy", "lr", "seconds"}, ...]``: the mean training loss and
        accuracy (over all processes) of each epoch, the learning rate it ended with, and its
        wall time; with ``validation_data`` also ``"val_accuracy"``. Training stopped early
        returns fewer records than ``config.epochs``.
    """
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
            "accuracy: pass validation_data=(images, labels) to train_model, or set "
            "early_stopping_patience=None")
    device = _training_device(config)
    batch_unit = _check_batch_size(model, config)
    augment, normalize = _data_hooks(config)
    num_classes = (getattr(model, "config", None) or {}).get("num_classes")
    data = _TrainingData(train_data, needs_unit_range=augment is not None or normalize is not None,
                         num_classes=num_classes)
    validation = None
    if validation_data is not None:
        validation = _TrainingData(validation_data, needs_unit_range=normalize is not None,
                                   num_classes=num_classes)
    context = distributed.setup(device)

    model.to(device)
    seed_everything(config.seed + context.rank)  # ranks draw different dropout/augmentation
    data_order = torch.Generator().manual_seed(config.seed)  # identical on every rank
    steps_per_epoch = _steps_per_epoch(len(data), config.batch_size, batch_unit)
    if steps_per_epoch == 0:
        raise ValueError(f"train_data holds {len(data)} examples, fewer than one training batch "
                         f"needs ({batch_unit}: batches are a multiple of the model's member "
                         "groups and processes); pass more examples")
    optimizer = _build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config, steps_per_epoch)
    )
    fp16 = device.type == "cuda" and config.precision == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)

    history: list[dict] = []
    start_epoch = 0
    best_state = None  # the best epoch's weights (CPU), kept for restore_best
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    if resume and checkpoint_path.is_file():
        start_epoch, history, best_state = _resume(
            checkpoint_path, model, optimizer, scheduler, scaler, data_order, config, context
        )

    network = model
    if context.is_distributed:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    if config.compile:
        network = torch.compile(network)

    autocast = dict(device_type=device.type, dtype=autocast_dtype,
                    enabled=autocast_dtype is not None and device.type == "cuda")

    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step; returns (loss sum, correct, rows) over the rows of the logits."""
        if augment is not None:
            x = augment(x)
        if normalize is not None:
            x = normalize(x)
        with torch.autocast(**autocast):
            logits = network(x)
            targets = _training_targets(model, y)
            loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        with torch.no_grad():
            correct = (logits.argmax(dim=-1) == targets).sum()
            rows = len(targets)
            return torch.stack([loss.detach().double() * rows, correct.double(),
                                loss.new_full((), rows, dtype=torch.float64)])

    show = config.progress and context.is_main
    with _process_settings(config), tqdm(
        total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
        desc="train", unit="step", disable=not show, dynamic_ncols=True,
    ) as bar:
        for epoch in range(start_epoch, config.epochs):
            if _patience_ran_out(history, config.early_stopping_patience):
                break
            started = time.perf_counter()
            network.train()
            batches, groups = epoch_batches(model, len(data), config.batch_size, batch_unit,
                                            data_order, epoch, config.seed)
            local = [shard(batch, groups, context) for batch in batches]
            # Sums stay on the device (no host sync per step) and are reduced over processes.
            totals = torch.zeros(3, dtype=torch.float64, device=device)
            for x, y in data.batches(local, device, config.num_workers):
                totals += train_step(x, y)
                bar.update(1)
            loss_sum, correct, rows = distributed.all_reduce_sum(totals, context).tolist()
            if not math.isfinite(loss_sum):
                # Raised before the checkpoint write: last.pt keeps the last finite epoch.
                raise ValueError(
                    f"training diverged in epoch {epoch + 1}: the mean loss is "
                    f"{loss_sum / rows}; lower the learning rate (lr={config.lr:g}) or "
                    f"weight_decay ({config.weight_decay:g}), or check the training data for "
                    "NaN/inf values"
                )
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum / rows,
                "accuracy": correct / rows,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            if validation is not None:
                record["val_accuracy"] = validation_accuracy(model, validation, normalize,
                                                             device, config.num_workers)
                if _best_epoch(history + [record]) == epoch + 1 and config.restore_best:
                    best_state = {key: value.detach().to("cpu", copy=True)
                                  for key, value in model.state_dict().items()}
            history.append(record)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / rows:.4f}",
                            acc=f"{correct / rows:.4f}")
            if checkpoint_path is not None:
                _save_checkpoint(checkpoint_path, model, optimizer, scheduler, scaler,
                                 data_order, config, epoch + 1, history, context, best_state)
    if config.early_stopping_patience is not None and config.restore_best \
            and best_state is not None:
        model.load_state_dict(best_state)
    return history


def validation_accuracy(model: nn.Module, validation, normalize, device, num_workers=0) -> float:
    """Accuracy of ``model`` on held-out data (a ``_TrainingData``): the argmax of the members'
    mean probability for an ensemble model, of the logits otherwise; eval mode, no gradients,
    and forked RNG streams, so that stochastic members (MC-Dropout) leave training's untouched.
    """
    from .methods.base import EnsembleModel, predict_members

    indices = list(torch.arange(len(validation)).split(1000))
    modes = [(module, module.training) for module in model.modules()]
    correct = 0
    forked = [device] if device.type == "cuda" else []
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=forked):
            for x, y in validation.batches(indices, device, num_workers):
                if normalize is not None:
                    x = normalize(x)
                if isinstance(model, EnsembleModel):
                    probs = predict_members(model, x).float().softmax(-1).mean(0)
                else:
                    probs = model(x)
                correct += int((probs.argmax(-1) == y).sum())
    finally:
        for module, training in modes:
            module.training = training
    return correct / len(validation)


def _best_epoch(history: list[dict]) -> int | None:
    """The epoch (1-based) of the highest validation accuracy, the first on ties."""
    scored = [record for record in history if "val_accuracy" in record]
    if not scored:
        return None
    return max(scored, key=lambda record: (record["val_accuracy"], -record["epoch"]))["epoch"]


def _patience_ran_out(history: list[dict], patience: int | None) -> bool:
    """True once ``patience`` epochs have passed without beating the best validation accuracy."""
    best = _best_epoch(history) if patience is not None else None
    return best is not None and history[-1]["epoch"] - best >= patience


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


def _training_device(config: TrainConfig) -> torch.device:
    if config.device is not None:
        device = torch.device(config.device)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", distributed.local_rank())
    return device


def _check_batch_size(model: nn.Module, config: TrainConfig) -> int:
    """The number of rows every global batch must be a multiple of; raise if it is not."""
    world_size = distributed.launched_world_size()
    multiple = getattr(model, "batch_multiple", 1)
    unit = multiple * world_size
    if config.batch_size % unit != 0:
        nearest = max(unit, round(config.batch_size / unit) * unit)
        why = f"the model's batch_multiple ({multiple}, one group per member)"
        if world_size > 1:
            why += f" times the {world_size} processes (each process's batch must be a multiple)"
        raise ValueError(
            f"batch_size={config.batch_size} must be a multiple of {unit}: {why}; "
            f"use batch_size={nearest}"
        )
    return unit


def _data_hooks(config: TrainConfig) -> tuple[Transform | None, Transform | None]:
    augment = config.augment if callable(config.augment) else None
    normalize = config.normalize
    if config.dataset is not None:
        from . import data  # imported here: torchvision is only needed for named datasets

        if normalize is None:
            normalize = data.normalizer(config.dataset)
        if config.augment is None:
            augment = data.train_augmentation(config.dataset)
    return augment, normalize


def _training_targets(model: nn.Module, y: torch.Tensor) -> torch.Tensor:
    targets = getattr(model, "training_targets", None)
    return y if targets is None else targets(y)


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
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


def _steps_per_epoch(num_items: int, batch_size: int, unit: int) -> int:
    full, rest = divmod(num_items, batch_size)
    return full + (1 if rest >= unit else 0)


def epoch_batches(
    model: nn.Module,
    num_items: int,
    batch_size: int,
    unit: int,
    generator: torch.Generator,
    epoch: int,
    seed: int,
) -> tuple[list[torch.Tensor], int]:
    """One epoch's global index batches, and how many member groups each batch is made of.

    Ordinarily a permutation drawn from ``generator`` cut into ``batch_size`` rows, the last,
    short batch trimmed to a multiple of ``unit`` (batch_multiple x processes) or dropped if
    nothing is left: groups = ``model.batch_multiple``. A model with
    ``independent_member_batches`` (deep ensembles with their own data order per member) gets
    :class:`~ensemblekit.samplers.MemberBatchSampler` batches instead: M blocks of
    ``batch_size`` rows, block m from member m's own permutation (a function of seed, epoch
    and m); groups = M.
    """
    if getattr(model, "independent_member_batches", False):
        members = model.num_members
        sampler = MemberBatchSampler(num_items, batch_size, members, seed=seed)
        sampler.set_epoch(epoch)
        blocks = [torch.tensor(batch).view(members, -1) for batch in sampler]
        blocks = [block[:, : block.shape[1] - block.shape[1] % unit] for block in blocks]
        return [block.reshape(-1) for block in blocks if block.numel()], members
    order = torch.randperm(num_items, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches[-1]) % unit:
        batches[-1] = batches[-1][: len(batches[-1]) - len(batches[-1]) % unit]
    return [batch for batch in batches if len(batch)], getattr(model, "batch_multiple", 1)


def shard(batch: torch.Tensor, groups: int, context: distributed.DistributedContext):
    """This process's rows of a global batch that is made of ``groups`` contiguous groups.

    Each group (one per member for Masksembles) is cut into ``world_size`` slices and this rank
    takes slice ``rank`` of every group, so each process's batch is again member-major and the
    processes together see exactly the (row, member) pairs a single process would.
    """
    if not context.is_distributed:
        return batch
    per_rank = batch.reshape(groups, context.world_size, -1)[:, context.rank]
    return per_rank.reshape(-1)


class _TrainingData:
    """Training examples as device tensors (indexed directly) or a Dataset (through a loader)."""

    def __init__(self, train_data, *, needs_unit_range: bool, num_classes: int | None) -> None:
        self.images = self.labels = None
        self.dataset = None
        if _holds_tensors(train_data):  # TensorDataset, ensemblekit's InMemoryDataset
            train_data = train_data.tensors
        if isinstance(train_data, (tuple, list)):
            if len(train_data) != 2:
                raise ValueError(f"train_data as a sequence must be (images, labels), got "
                                 f"{len(train_data)} items")
            self.images, self.labels = self._check_tensors(*train_data, needs_unit_range,
                                                           num_classes)
        elif isinstance(train_data, Dataset):
            self.dataset = train_data
            if len(train_data) == 0:
                raise ValueError("train_data is an empty dataset")
        else:
            raise TypeError(f"train_data must be (images, labels) tensors or a Dataset, got "
                            f"{type(train_data).__name__}")

    @staticmethod
    def _check_tensors(images, labels, needs_unit_range, num_classes):
        check_tensor("images", images)
        check_tensor("labels", labels, ndim=1)
        if images.ndim < 2 or len(images) != len(labels) or len(images) == 0:
            raise ValueError(f"images (N, ...) and labels (N,) must be non-empty and agree on N, "
                             f"got shapes {tuple(images.shape)} and {tuple(labels.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point (in [0, 1]), got {images.dtype}; "
                             "convert with images.float() / 255")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
        check_finite("images", images)  # one NaN image turns every weight into NaN
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            valid = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
            raise ValueError(f"labels must be class indices in {valid}, got labels in "
                             f"[{low}, {high}]; out-of-distribution sets (label -1) cannot be "
                             "trained on")
        if needs_unit_range and (images.min() < 0 or images.max() > 1):
            raise ValueError(
                f"images must lie in [0, 1] (got values in [{images.min():.3g}, "
                f"{images.max():.3g}]): train_model augments and normalises them itself, so pass "
                "raw images, not normalised ones"
            )
        return images, labels.long()

    def __len__(self) -> int:
        return len(self.labels) if self.dataset is None else len(self.dataset)

    def batches(self, indices: list[torch.Tensor], device, num_workers: int) -> Iterator[tuple]:
        """``(x, y)`` on ``device`` for each index batch, in order."""
        if self.dataset is None:
            if self.images.device != device:  # moved once, then indexed on the device
                self.images, self.labels = self.images.to(device), self.labels.to(device)
            for index in indices:
                index = index.to(device)
                yield self.images[index], self.labels[index]
            return
        loader = DataLoader(self.dataset, batch_sampler=[index.tolist() for index in indices],
                            num_workers=num_workers, pin_memory=device.type == "cuda")
        for x, y in loader:
            yield (x.to(device, non_blocking=True),
                   torch.as_tensor(y).long().to(device, non_blocking=True))


def _holds_tensors(data) -> bool:
    return (isinstance(data, Dataset) and isinstance(getattr(data, "tensors", None), tuple)
            and len(data.tensors) == 2 and getattr(data, "transform", None) is None)


def _save_checkpoint(path, model, optimizer, scheduler, scaler, data_order, config, epoch,
                     history, context, best_state=None) -> None:
    # Collective: every rank hands its RNG state to the main process, which writes the file.
    rng_states = distributed.all_gather_object(get_rng_state(), context)
    if context.is_main:
        checkpoint.save_training_checkpoint(
            path,
            model=model,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict(),
            epoch=epoch,
            history=history,
            rng=rng_states,
            data_order=data_order.get_state(),
            train_config=_comparable(config),
            best_state=best_state,
        )


def _resume(path, model, optimizer, scheduler, scaler, data_order, config, context):
    payload = checkpoint.read_checkpoint(path, kind="training")
    saved, current = payload.get("train_config") or {}, _comparable(config)
    changed = sorted(key for key in current if saved.get(key) != current[key])
    if changed:
        details = ", ".join(f"{key}: {saved.get(key)!r} -> {current[key]!r}" for key in changed)
        raise ValueError(
            f"cannot resume from {path}: the training config changed ({details}); resume with "
            "the config that wrote the checkpoint, or use a new checkpoint_dir"
        )
    model_config = getattr(model, "config", None)
    if payload["model_config"] is not None and model_config is not None \
            and dict(model_config) != payload["model_config"]:
        raise ValueError(
            f"cannot resume from {path}: it was written for model config "
            f"{payload['model_config']}, not {dict(model_config)}"
        )
    checkpoint.restore_state_dict(model, payload["state_dict"], source=str(path),
                                  file_config=payload["model_config"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if "scaler" in payload:
        scaler.load_state_dict(payload["scaler"])
    data_order.set_state(payload["data_order"])
    rng_states = payload["rng"]
    if len(rng_states) == context.world_size:
        set_rng_state(rng_states[context.rank])
    else:
        # A different number of processes cannot continue the old streams; start fresh ones
        # that still depend only on the seed and the epoch.
        seed_everything(config.seed + context.rank + 1000 * payload["epoch"])
    return payload["epoch"], list(payload["history"]), payload.get("best_state")


def _comparable(config: TrainConfig) -> dict:
    values = config.to_dict()
    for key in _RESUMABLE_CHANGES:
        values.pop(key)
    return values


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """Run the block with ``torch.set_num_threads(threads)``, then restore (None: unchanged)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, minimum=1, maximum=MAX_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _process_settings(config: TrainConfig):
    """Apply the config's process-wide torch settings while training, then restore them."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    if config.deterministic:
        # cuBLAS reads this when it first starts; set it early in the process to take effect.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        with cpu_threads(config.threads):
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.benchmark = previous[1]

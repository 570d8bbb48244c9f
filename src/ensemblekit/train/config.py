"""How a model is trained: :class:`TrainConfig` and the choices it offers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._validation import (
    check_choice,
    check_device,
    check_flag,
    check_float,
    check_int,
    check_seed,
    check_sequence,
)
from ..data import available_datasets
from ..losses import REGRESSION_LOSSES
from ..runtime import MAX_THREADS

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("multistep", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
#: Upper bound of every learning rate a schedule reaches (and of weight_decay): beyond it
#: float32 updates overflow ("value cannot be converted to type float") instead of training.
MAX_LR = 1e6

#: The regression fields and their defaults. ``to_dict`` leaves out those at their default,
#: so a classification config (which never sets them) writes the dict it wrote before
#: regression existed: run records and the resume comparison stay byte-identical.
REGRESSION_DEFAULTS = {"loss": None, "beta": 0.5, "mse_warmup_epochs": 0}
#: the loss a regression model trains with when ``loss`` is None
DEFAULT_REGRESSION_LOSS = "beta_nll"

#: a data hook: a batch of images (B, C, H, W) on the training device -> the same shape
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

    Regression models (``build_model(..., task="regression")``) train on a Gaussian loss of
    their members' means and variances: ``loss`` is ``"beta_nll"`` (None, the default, means
    it; Seitzer et al. 2022, weighted by ``variance ** beta``, ``beta`` 0.5), ``"gaussian_nll"``
    or ``"mse"`` (:mod:`ensemblekit.losses`); the first ``mse_warmup_epochs`` epochs fit the
    means with ``"mse"`` before that loss takes over. A classifier trains with cross-entropy
    and refuses these three fields (:func:`train_model` says so).

    Early stopping (``early_stopping_patience``, needs ``validation_data`` in
    :func:`train_model`): the monitored metric is the validation accuracy of the ensemble's
    prediction (argmax of the members' mean probability) -- for a regression model the
    validation NLL of the members' mixture (lower is better) --, measured after every epoch;
    training stops once ``early_stopping_patience`` epochs in a row bring no strict improvement
    on the best so far, or at ``epochs``. ``restore_best=True`` (default) then loads the weights of
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
    loss: str | None = None
    beta: float = 0.5
    mse_warmup_epochs: int = 0

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
            check_choice("dataset", self.dataset, available_datasets())
        for name in ("augment", "normalize"):
            hook = getattr(self, name)
            if hook not in (None, False) and not callable(hook):
                raise ValueError(f"{name} must be a callable on image batches or None, got "
                                 f"{hook!r}")
        if self.normalize is False:
            raise ValueError("normalize=False is not a choice; use normalize=None")
        if self.loss is not None:
            check_choice("loss", self.loss, REGRESSION_LOSSES)
        self.beta = check_float("beta", self.beta, minimum=0.0, maximum=1.0)
        self.mse_warmup_epochs = check_int("mse_warmup_epochs", self.mse_warmup_epochs,
                                           minimum=0)
        if self.mse_warmup_epochs >= self.epochs:
            raise ValueError(
                f"mse_warmup_epochs={self.mse_warmup_epochs} leaves no epoch of the "
                f"{self.epochs} for the variance to train; use fewer warm-up epochs than epochs")

    def regression_fields(self) -> dict:
        """The regression fields not at their default (empty for a classification config)."""
        return {name: getattr(self, name) for name, default in REGRESSION_DEFAULTS.items()
                if getattr(self, name) != default}

    def regression_loss(self, epoch: int) -> str:
        """The loss a regression model trains with in ``epoch`` (0-based): ``"mse"`` during the
        warm-up, then ``loss`` (``"beta_nll"`` when None)."""
        if epoch < self.mse_warmup_epochs:
            return "mse"
        return self.loss or DEFAULT_REGRESSION_LOSS

    def to_dict(self) -> dict:
        """The config as JSON-friendly values (callables by qualified name)."""
        values = dataclasses.asdict(self)
        for name in ("augment", "normalize"):
            hook = values[name]
            if callable(hook):
                values[name] = getattr(hook, "__qualname__", type(hook).__qualname__)
        values["milestones"] = list(values["milestones"])
        values["betas"] = list(values["betas"])
        for name, default in REGRESSION_DEFAULTS.items():
            if values[name] == default:
                del values[name]
        return values

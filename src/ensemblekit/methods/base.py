"""The interface every method's model offers, and :func:`predict_members`.

Every model built by :func:`ensemblekit.build_model` (or a converter in :mod:`ensemblekit.convert`)
is an :class:`EnsembleModel`. The training loop is the same for every method::

    model.train()
    logits = model(x)                                   # (rows, K)
    loss = F.cross_entropy(logits, model.training_targets(y))

and so is inference: ``predict_members(model, x)`` returns member logits of shape (M, B, K).

A regression model (``build_model(..., task="regression", num_outputs=D)``,
:mod:`ensemblekit.methods.task`) trains through the same contract with a Gaussian loss on
``gaussian_outputs(model(x), D)`` and predicts ``GaussianMembers`` (means, variances), each
``(M, B, D)``; :func:`member_outputs` is the raw ``(M, B, 2D)`` both are read from.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_flag, check_int, check_tensor  # noqa: F401 (check_flag: re-exported)
from ..layers.batchensemble import batchensemble_parameter_groups
from ..members import GaussianMembers, repeat_members, split_members
from ..runtime import eval_mode
from .task import gaussian_outputs, model_task


class EnsembleModel(nn.Module):
    """Base class: one backbone (or several) seen as ``num_members`` members.

    Attributes:
        method: the method's registry name.
        num_members: M, the number of members ``predict_members`` returns by default.
        batch_multiple: training batch sizes must be a multiple of this (1: any size).
        independent_member_batches: True when ``forward`` expects member-major batches of
            M*B rows built by :class:`ensemblekit.samplers.MemberBatchSampler` (deep ensembles
            with ``independent_batches=True``); False for an ordinary batch.
        config: what ``build_model(**config)`` needs to rebuild the architecture (a
            JSON-serialisable dict), or ``None`` for a model made by a converter.
        task: ``"classification"`` (member logits) or ``"regression"`` (Gaussian members,
            :mod:`ensemblekit.methods.task`); set by ``build_model`` or a converter.
        num_outputs: D, the regression targets per example (None for a classifier).
    """

    method: str = ""
    independent_member_batches: bool = False
    task: str = "classification"
    num_outputs: int | None = None

    def __init__(self, num_members: int, *, batch_multiple: int = 1) -> None:
        super().__init__()
        self.num_members = check_int("num_members", num_members, minimum=1)
        self.batch_multiple = check_int("batch_multiple", batch_multiple, minimum=1)
        self.config: dict | None = None

    def training_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Targets that line up with the rows of ``model(x)`` (identity unless it tiles).

        Call it after the forward it belongs to: a method that draws which example each row
        shows (MIMO's slot permutations) returns the labels of its last forward's draw."""
        return y

    def forward_members(self, x: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        """Member logits ``(M, B, K)`` for an ordinary batch; modes are set by the caller."""
        raise NotImplementedError

    def member_weights(self) -> torch.Tensor:
        """Flattened effective weights per member: ``(M, P)`` (see each method)."""
        raise NotImplementedError

    def member_weight_columns(self, module: nn.Module) -> int:
        """How many columns of a member's row of :meth:`member_weights` hold ``module``'s own
        parameters (its ``parameters(recurse=False)``); the columns follow ``named_modules``
        order. Here: all of them (each member holds the module's parameters whole); a method
        whose members own a part of a parameter (Packed-Ensembles, MIMO's ends) or an
        effective weight (BatchEnsemble) says how much."""
        return sum(p.numel() for p in module.parameters(recurse=False))

    def member_features(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """Each member's share ``(M, B, ...)`` of a hidden representation ``x`` that ``layer``
        of the backbone read during ``forward_members`` of a batch of B examples. Here: a
        member-major batch, member m in rows ``m*B:(m+1)*B`` (the tiled methods); a method
        that packs members on channels or shares the representation says how."""
        return x.unflatten(0, (self.num_members, -1))

    def parameter_groups(
        self, weight_decay: float, lr: float, fast_weight_lr_multiplier: float = 0.5,
        fast_weight_decay: float = 0.0,
    ) -> list[dict]:
        """Optimizer groups: every parameter gets ``weight_decay`` (BatchNorm and biases too,
        as in the reference implementations) except BatchEnsemble fast weights, which get
        ``fast_weight_decay`` (default none) and ``lr * fast_weight_lr_multiplier``; other
        methods have a single group."""
        return batchensemble_parameter_groups(self, weight_decay, lr, fast_weight_lr_multiplier,
                                              fast_weight_decay)

    def _check_batch(self, x: torch.Tensor, multiple: int, hint: str) -> None:
        check_tensor("x", x)
        if x.ndim == 0 or x.shape[0] % multiple != 0:
            rows = "a 0-dimensional tensor" if x.ndim == 0 else f"a batch of {x.shape[0]}"
            raise ValueError(
                f"{self.method} with {self.num_members} members needs a batch size that is a "
                f"multiple of {multiple}, got {rows}; {hint}"
            )

    def extra_repr(self) -> str:
        return f"method={self.method!r}, num_members={self.num_members}"


class TiledInferenceModel(EnsembleModel):
    """A model whose members read a member-major batch: inference tiles x M times."""

    def forward_members(self, x: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        return split_members(self.backbone(repeat_members(x, self.num_members)), self.num_members)


def no_drop_site_message(method: str, backbone: nn.Module, n: int, *, rule: str = "") -> str:
    """Why a masking method refuses a backbone without drop sites (its members would be equal).

    ``rule``: the condition a drop site must meet, when the method skips narrow ones.
    """
    where = f"drop site ({rule})" if rule else "drop site (a hidden layer)"
    fixes = "widen the backbone (width), use fewer members (n), or " if rule else ""
    return (
        f"{method} needs a backbone with at least one {where} for its masks; this "
        f"{type(backbone).__name__} has none, so its {n} members would be identical: "
        f"{fixes}give it a hidden layer (mlp: hidden=(64,))"
    )


def scale_member_gradients(logits: torch.Tensor, count: int) -> torch.Tensor:
    """``logits`` (M*B rows of M members), with the gradient flowing back through them
    multiplied by M: a loss averaged over the M*B rows then gives each member its own loss's
    gradient (instead of 1/M of it), so learning rate and weight decay mean for each member
    what they mean for the single model."""
    if logits.requires_grad and count > 1:
        logits.register_hook(lambda grad: grad * count)
    return logits


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` flattened into one vector (``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def member_outputs(
    model: EnsembleModel, x: torch.Tensor, *, num_samples: int | None = None
) -> torch.Tensor:
    """The members' raw outputs ``(M, B, K)`` for an ordinary batch ``x`` of B examples: the
    logits of a classifier, the ``2*D`` head values (means, raw variances) of a regression
    model. :func:`predict_members` reads them; arguments and modes as there."""
    if getattr(model, "returns_member_logits", False):  # compiled members
        check_tensor("x", x)
        if num_samples is not None and num_samples != model.num_members:
            raise ValueError(f"compiled members have a fixed number of members "
                             f"({model.num_members}); leave num_samples=None")
        return model(x)
    if not isinstance(model, EnsembleModel):
        raise TypeError(
            f"predict_members needs a model from ensemblekit.build_model or an ensemblekit "
            f"converter, got {type(model).__name__}"
        )
    check_tensor("x", x)
    if x.ndim == 0:
        raise ValueError("x must be a batch (B, ...), got a 0-dimensional tensor")
    if num_samples is not None:
        num_samples = check_int("num_samples", num_samples, minimum=1)
        if model.method != "mc_dropout" and num_samples != model.num_members:
            raise ValueError(
                f"num_samples applies to mc_dropout only; a {model.method} model has a fixed "
                f"number of members ({model.num_members}); leave num_samples=None"
            )
    with eval_mode(model):
        return model.forward_members(x, num_samples)


def predict_members(
    model: EnsembleModel, x: torch.Tensor, *, num_samples: int | None = None
) -> torch.Tensor | GaussianMembers:
    """Member logits of shape ``(M, B, K)`` for an ordinary batch ``x`` of B examples; for a
    regression model, :class:`~ensemblekit.members.GaussianMembers` ``(means, variances)``,
    each ``(M, B, D)``, variances > 0.

    The model runs in eval mode (BatchNorm uses running statistics; MC-Dropout keeps only its
    dropout layers stochastic); every module's train/eval mode is restored afterwards. Wrap the
    call in ``torch.no_grad()`` for inference; without it, gradients flow as usual.

    Args:
        model: an :class:`EnsembleModel` (from ``build_model`` or a converter), or the module
            :func:`ensemblekit.compile_members` returns (called as it is).
        x: a batch ``(B, ...)``, not tiled.
        num_samples: MC-Dropout only: the number of stochastic passes M (default: the model's
            ``num_members``). Other methods have a fixed M and reject a different value.
    """
    outputs = member_outputs(model, x, num_samples=num_samples)
    if model_task(model) == "regression" and isinstance(model, EnsembleModel):
        return gaussian_outputs(outputs, model.num_outputs)
    return outputs

"""What the members of a model compute inside, and which weights belong to which layer.

Two probes for the member-similarity study, both method-agnostic:

- :func:`member_outputs`: member logits ``(M, N, K)`` together with two hidden representations
  per member, ``(M, N, D)`` each, captured with forward pre-hooks in the same pass of the one
  inference loop (:func:`ensemblekit.predict.predict`): the ``penultimate`` features (the input
  of the backbone's head) and a ``mid`` layer (the input of the middle conv / linear layer,
  :func:`mid_layer_name`). A model with one backbone says where each member's share of a
  representation lies (``model.member_features``: the rows ``m*B:(m+1)*B`` of a member-major
  pass for the tiled methods, member m's channel block for Packed-Ensembles, the one shared
  representation for MIMO); a model whose members are separate backbones (a Deep Ensemble)
  runs each member's own backbone.
- :func:`layer_columns`: which columns of ``model.member_weights()`` (M, P) hold which layer, so
  that weight similarity can be read per layer as well as overall.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.batchensemble import BATCHENSEMBLE_LAYERS
from ..models.base import layer_sizes
from ..predict import Probes, predict

#: Feature maps are average-pooled to at most this many positions per side before the CKA, so
#: that a ResNet's mid-network map (e.g. 128 x 16 x 16) does not need a 32768-wide covariance.
MAX_POOLED_SIDE = 4


def member_backbones(model) -> list[nn.Module]:
    """The backbone(s) whose modules see the members' rows: one per member for a model whose
    members are separate networks (``model.members``, a Deep Ensemble), else the one shared
    backbone (which reads a member-major batch)."""
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList):
        return list(members)
    return [model.backbone]


def mid_layer_name(backbone: nn.Module) -> str:
    """The middle conv / linear layer (BatchNorm aside) of ``backbone``, in ``named_modules``
    order: index ``L // 2`` of its L such layers (LeNet: ``fc1``, the MLP 64-32-16: the third
    hidden layer, reading the second one's output)."""
    names = [name for name, module in backbone.named_modules()
             if layer_sizes(module) is not None
             and not isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not names:
        raise ValueError(f"{type(backbone).__name__} has no conv or linear layer to probe")
    return names[len(names) // 2]


def member_outputs(model, images: torch.Tensor, *, normalize=None, batch_size: int = 500,
                   seed: int = 0, num_samples: int | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Member logits ``(M, N, K)`` and ``{"penultimate", "mid"}`` representations ``(M, N, D)``
    (float32, CPU) of the [0, 1] images ``(N, ...)``, normalised by ``normalize``.

    Eval mode (MC-Dropout keeps dropout on, as in ``predict_members``); stochastic members draw
    from ``seed`` in forked RNG streams. Feature maps are pooled to at most
    ``MAX_POOLED_SIDE`` x ``MAX_POOLED_SIDE`` positions, then flattened.
    """
    backbones = member_backbones(model)
    names = {"penultimate": getattr(backbones[0], "head_name", "head"),
             "mid": mid_layer_name(backbones[0])}
    # separate member networks run one by one: a vectorised pass would bypass the hooks
    forward = model.forward_members_loop if len(backbones) > 1 else None
    probes = Probes(layers={key: [backbone.get_submodule(name) for backbone in backbones]
                            for key, name in names.items()},
                    reduce=_pooled, forward=forward,
                    members=None if len(backbones) > 1 else model.member_features)
    outputs = predict(model, images, normalize=normalize, batch_size=batch_size, seed=seed,
                      num_samples=num_samples, probes=probes)
    return outputs.logits, outputs.features


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """A captured input ``(rows, ...)`` as ``(rows, D)``: feature maps pooled first."""
    if x.ndim == 4 and max(x.shape[-2:]) > MAX_POOLED_SIDE:
        x = F.adaptive_avg_pool2d(x, (min(x.shape[-2], MAX_POOLED_SIDE),
                                      min(x.shape[-1], MAX_POOLED_SIDE)))
    return x.flatten(1)


def layer_columns(model) -> list[tuple[str, slice, bool]]:
    """``(layer name, columns, is_norm)`` of every layer with parameters, in the column order
    of ``model.member_weights()``, each as wide as the model says a member's share of it is
    (``model.member_weight_columns``: a BatchEnsemble layer's effective weight and member
    bias, a packed layer's member rows, MIMO's slot columns and head block; every other
    layer its own parameters); ``is_norm`` marks normalisation layers (BatchNorm scale and
    shift)."""
    backbone = member_backbones(model)[0]
    columns, start = [], 0
    for name, module in backbone.named_modules():
        width = model.member_weight_columns(module)
        if width:
            is_norm = isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm
                                 | nn.LayerNorm)
            columns.append((name, slice(start, start + width), is_norm))
            start += width
    return columns


def fast_weights(model) -> torch.Tensor | None:
    """All BatchEnsemble fast weights ``r`` and ``s`` of ``model``, flattened (a copy); None for
    a model without BatchEnsemble layers."""
    pieces = [p.detach().reshape(-1).cpu().clone() for module in model.modules()
              if isinstance(module, BATCHENSEMBLE_LAYERS) for p in module.fast_weights()]
    return torch.cat(pieces) if pieces else None

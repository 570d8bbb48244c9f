"""MC-Dropout's inference-time noise, drawn from a generator of its own.

torch's dropout layers draw from the global RNG, so two ``predict_members`` calls on the same
input differ and each call moves the caller's random stream. At inference
:class:`~ensemblekit.methods.MCDropoutModel` instead keeps its dropout layers in eval mode
(identity) and multiplies what each one outputs by a mask drawn from a ``torch.Generator`` it
seeds afresh on every call (:func:`member_dropout`). Member m gets one mask per dropout call,
shared by every example of the batch: member m is one fixed sub-network (one sample of the
weights, as in Gal & Ghahramani's derivation), a prediction depends neither on the call nor on
the other examples of the batch, and the masks of one call can be frozen into an exported graph
(:mod:`ensemblekit.export`). Training-time dropout is torch's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: dropout layers whose noise is drawn here: element-wise ``Dropout`` and the channel-wise ones
SEEDED_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)

#: ``(layer, x) -> mask``: the member mask ``(M, 1, *x.shape[1:] or C, 1...)`` for a call
MaskSource = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def unseeded_dropouts(module: nn.Module) -> list[str]:
    """Paths of the dropout layers in ``module`` whose noise cannot be drawn here
    (``AlphaDropout``, ``FeatureAlphaDropout``, subclasses): described for an error message."""
    return [
        f"{path!r} ({type(layer).__name__})"
        for path, layer in module.named_modules()
        if isinstance(layer, nn.modules.dropout._DropoutNd) and type(layer) not in SEEDED_DROPOUTS
    ]


def member_mask(
    layer: nn.Module, x: torch.Tensor, members: int, generator: torch.Generator
) -> torch.Tensor:
    """One dropout mask per member for ``layer``'s input ``x`` of shape ``(M*B, C, *)``.

    Returns:
        ``(M, 1, C, *)`` for ``nn.Dropout`` (element-wise) or ``(M, 1, C, 1, ...)`` for the
        channel-wise ``Dropout1d/2d/3d``; kept entries are ``1 / (1 - p)`` (torch's scaling),
        dropped ones 0, in ``x``'s dtype.
    """
    per_example = tuple(x.shape[1:])
    if type(layer) is not nn.Dropout:  # channel-wise: one draw per channel
        per_example = per_example[:1] + (1,) * (len(per_example) - 1)
    keep = torch.rand((members, 1, *per_example), generator=generator, device=x.device) >= layer.p
    # p = 1 keeps nothing (torch returns zeros too); no 1/0 scale.
    return keep.to(x.dtype).mul_(1.0 / (1.0 - layer.p) if layer.p < 1 else 0.0)


def seeded_mask_source(members: int, seed: int, device: torch.device) -> MaskSource:
    """A fresh source of member masks: a generator seeded with ``seed``, drawn from in call
    order (the same seed and call order give the same masks)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return lambda layer, x: member_mask(layer, x, members, generator)


@contextmanager
def member_dropout(backbone: nn.Module, members: int, masks: MaskSource) -> Iterator[None]:
    """Within the block, every dropout layer of ``backbone`` with ``p > 0`` is the identity
    (eval mode: it draws nothing from the global RNG) followed by its member mask: a
    member-major output ``(M*B, *)`` is viewed as ``(M, B, *)`` and multiplied by
    ``masks(layer, x)``. Modes and hooks are restored on exit."""
    layers = [
        layer
        for layer in backbone.modules()
        if isinstance(layer, nn.modules.dropout._DropoutNd) and layer.p > 0
    ]
    unseeded = unseeded_dropouts(backbone)
    if unseeded:
        raise ValueError(
            f"MC-Dropout draws its inference noise for nn.Dropout and Dropout1d/2d/3d only; "
            f"{', '.join(unseeded)} would draw from the global RNG: replace them"
        )

    def apply_mask(layer: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        mask = masks(layer, output)
        grouped = output.reshape(members, -1, *output.shape[1:])
        return (grouped * mask).reshape(output.shape)

    modes = [layer.training for layer in layers]
    handles = [layer.register_forward_hook(apply_mask) for layer in layers]
    try:
        for layer in layers:
            layer.eval()
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer, training in zip(layers, modes, strict=True):
            layer.training = training

"""A multilayer perceptron on inputs of any size: ``Linear -> drop site`` per hidden layer (the
drop site applies the ReLU, then the method's dropout / masks). Every hidden layer is a classic
Dropout position, so ``placement="dropout"`` is ``placement="all"`` here.

The default hidden sizes 64-32-16 are the MNIST network of the BatchEnsemble study
(784-64-32-16-10 on 28x28 digits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_int, check_sequence
from .base import Backbone, check_width, scaled_width, size_tuple
from .factory import LayerFactory
from .registry import register_backbone


class MLP(Backbone):
    """``(B, in_channels, *input_size)`` -> flatten -> hidden blocks -> logits ``(B, K)``.

    Each hidden block is ``linear -> drop site`` (ReLU included); the last linear is the head.
    """

    def __init__(
        self,
        layers: LayerFactory,
        num_classes: int,
        in_channels: int,
        *,
        hidden: tuple[int, ...],
        width: float,
        input_size: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, *input_size)
        features = in_channels * math.prod(input_size)
        blocks = []
        for size in hidden:
            size = layers.site_channels(scaled_width(size, width), classic=True)
            blocks.append(nn.Sequential(
                layers.linear(features, size, stem=not blocks),
                layers.drop(size, spatial=False, classic=True),
            ))
            features = size
        self.hidden = nn.Sequential(*blocks)
        self.head = layers.linear(features, num_classes, stem=not blocks, head=True)
        self.stem_name = "hidden.0.0" if blocks else "head"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.head(self.hidden(x.flatten(1)))


@register_backbone("mlp")
def mlp(
    layers: LayerFactory,
    num_classes: int,
    in_channels: int,
    *,
    width: float = 1.0,
    hidden: tuple[int, ...] = (64, 32, 16),
    input_size: int | tuple[int, ...] | None = None,
) -> MLP:
    """MLP on ``(B, in_channels)`` vectors, or ``(B, in_channels, *input_size)`` inputs.

    ``input_size``: an int ``s`` means ``(s, s)`` images (e.g. 8 for digits, 28 for MNIST).
    ``hidden``: hidden layer sizes before the ``width`` multiplier.
    """
    hidden = tuple(check_int("hidden size", h, minimum=1)
                   for h in check_sequence("hidden", hidden, of="layer sizes"))
    return MLP(
        layers,
        num_classes,
        in_channels,
        hidden=hidden,
        width=check_width(width),
        input_size=() if input_size is None else size_tuple(input_size),
    )

"""CIFAR-style ResNets (3x3 stem, no max-pool): ResNet-20, ResNet-18 and Wide ResNet-28-10.

Drop sites (where Masksembles / Dropout go) are every ``conv -> BN -> ReLU``, and the
residual stream is masked too, so that every member of a Masksembles model is a well-defined
thin sub-network (member m keeps the channel set K_m(C) at every layer of width C). A drop site
applies the ReLU itself (see :class:`~ensemblekit.models.LayerFactory`), so ``drop`` below
reads ``drop(relu(.))`` for every method::

    out = drop(bn1(conv1(x)))
    out = bn2(conv2(out))
    out = drop(out + shortcut(x))             # shortcut: identity, or 1x1 conv + BN

The block input ``x`` has already been through the drop site of its width. Wide ResNets are
pre-activation networks (``BN -> ReLU -> conv``), so there each ``BN -> ReLU`` is a drop site
(``drop(bn(x))``) and every convolution reads masked channels; the residual stream itself
carries the sum of conv outputs, whose channels outside K_m never reach a convolution unmasked.

Classic Dropout positions (``placement="dropout"``): in the CIFAR ResNets, every drop site of the
last stage (masking its output is masking the pooled features before the classifier; the whole
stage is masked so that every layer of that width reads and writes masked channels); in Wide
ResNets, between the two convolutions of each block (``drop2``), where Zagoruyko & Komodakis
put dropout.

The CIFAR nets pool globally, so they accept any height and width; they are designed for 32x32.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, check_width, scaled_width
from .factory import LayerFactory
from .registry import register_backbone


def projection(layers: LayerFactory, in_channels: int, out_channels: int, stride: int):
    """The downsampling shortcut ``1x1 conv (stride) -> BN``, or identity when shapes agree."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        layers.conv(in_channels, out_channels, 1, stride=stride), layers.norm(out_channels)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (post-activation, He et al. 2016)."""

    def __init__(self, layers: LayerFactory, in_channels: int, channels: int, stride: int,
                 *, classic: bool = False):
        super().__init__()
        self.conv1 = layers.conv(in_channels, channels, 3, stride=stride, padding=1)
        self.bn1 = layers.norm(channels)
        self.drop1 = layers.drop(channels, classic=classic)
        self.conv2 = layers.conv(channels, channels, 3, padding=1)
        self.bn2 = layers.norm(channels)
        self.shortcut = projection(layers, in_channels, channels, stride)
        self.drop2 = layers.drop(channels, classic=classic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.drop2(out + self.shortcut(x))


class CifarResNet(Backbone):
    """3x3 stem -> stages of :class:`BasicBlock` -> global average pool -> linear head."""

    def __init__(
        self,
        layers: LayerFactory,
        num_classes: int,
        in_channels: int,
        *,
        stages: list[tuple[int, int, int]],
        width: float,
    ) -> None:
        """``stages``: (channels before ``width``, number of blocks, stride of the first block)."""
        super().__init__()
        self.input_shape = (in_channels, None, None)
        if len(stages) < 2:
            raise ValueError("a CIFAR ResNet needs at least two stages (the last is the classic "
                             f"dropout position, the stem belongs to the first), got {stages}")
        channels = layers.site_channels(scaled_width(stages[0][0], width))
        self.stem = layers.conv(in_channels, channels, 3, padding=1, stem=True)
        self.stem_bn = layers.norm(channels)
        self.stem_drop = layers.drop(channels)
        blocks = []
        for stage, (stage_channels, num_blocks, stride) in enumerate(stages):
            last = stage == len(stages) - 1
            stage_channels = layers.site_channels(scaled_width(stage_channels, width),
                                                  classic=last)
            for index in range(num_blocks):
                blocks.append(BasicBlock(layers, channels, stage_channels,
                                         stride if index == 0 else 1, classic=last))
                channels = stage_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = layers.linear(channels, num_classes, head=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem_drop(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_backbone("resnet20")
def resnet20(
    layers: LayerFactory, num_classes: int, in_channels: int, *, width: float = 1.0
) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages x 3 blocks, 16-32-64 channels."""
    stages = [(16, 3, 1), (32, 3, 2), (64, 3, 2)]
    return CifarResNet(layers, num_classes, in_channels, stages=stages, width=check_width(width))


@register_backbone("resnet18")
def resnet18(
    layers: LayerFactory, num_classes: int, in_channels: int, *, width: float = 1.0
) -> CifarResNet:
    """ResNet-18 in its CIFAR form: 3x3 stem, no max-pool, 4 stages x 2 blocks, 64-512."""
    stages = [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]
    return CifarResNet(layers, num_classes, in_channels, stages=stages, width=check_width(width))


class WideBlock(nn.Module):
    """Pre-activation block of a Wide ResNet (Zagoruyko & Komodakis 2016).

    ``o = drop(bn1(x))``; ``y = conv2(drop(bn2(conv1(o))))`` (each drop applies the ReLU); the
    output is
    ``y + x``, or ``y + conv1x1(o)`` when the block changes the shape.
    """

    def __init__(self, layers: LayerFactory, in_channels: int, channels: int, stride: int,
                 *, inner: int | None = None):
        """``inner``: the channels between the two convolutions (default ``channels``)."""
        super().__init__()
        inner = channels if inner is None else inner
        self.bn1 = layers.norm(in_channels)
        self.drop1 = layers.drop(in_channels)
        self.conv1 = layers.conv(in_channels, inner, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(inner)
        self.drop2 = layers.drop(inner, classic=True)
        self.conv2 = layers.conv(inner, channels, 3, padding=1)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = layers.conv(in_channels, channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.drop1(self.bn1(x))
        y = self.conv2(self.drop2(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(Backbone):
    """3x3 stem -> 3 stages of :class:`WideBlock` -> BN -> drop (ReLU) -> pool -> head."""

    def __init__(
        self,
        layers: LayerFactory,
        num_classes: int,
        in_channels: int,
        *,
        depth: int,
        widen_factor: int,
        width: float,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6k + 4, got {depth}")
        per_stage = (depth - 4) // 6
        self.input_shape = (in_channels, None, None)
        channels = layers.site_channels(scaled_width(16, width))
        self.stem = layers.conv(in_channels, channels, 3, padding=1, stem=True)
        blocks = []
        for stage, stride in enumerate((1, 2, 2)):
            stage_channels = scaled_width(16 * widen_factor * 2**stage, width)
            inner = layers.site_channels(stage_channels, classic=True)
            stage_channels = layers.site_channels(stage_channels)
            for index in range(per_stage):
                blocks.append(WideBlock(layers, channels, stage_channels,
                                        stride if index == 0 else 1, inner=inner))
                channels = stage_channels
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = layers.norm(channels)
        self.final_drop = layers.drop(channels)
        self.head = layers.linear(channels, num_classes, head=True)

    def layer_widths(self):
        """As :meth:`Backbone.layer_widths`; when only the inner drop sites (``drop2``) have the
        method's masks / dropout (``placement="dropout"``), only the layers around them read or
        write masked channels: the residual stream has drop sites of the same widths that keep
        every channel, so the width alone does not say which channels are masked."""
        widths = super().layer_widths()
        blocks = list(self.blocks)
        inner_only = type(self.final_drop) is nn.ReLU and any(
            type(block.drop2) is not nn.ReLU for block in blocks)
        if not inner_only:
            return widths
        reads_inner = {f"blocks.{i}.conv2" for i in range(len(blocks))}
        writes_inner = {f"blocks.{i}.{name}" for i in range(len(blocks))
                        for name in ("conv1", "bn2")}
        return [dataclasses.replace(width, in_masked=width.name in reads_inner
                                    or width.name.endswith(".bn2"),
                                    out_masked=width.name in writes_inner)
                for width in widths]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.blocks(self.stem(x))
        x = self.final_drop(self.final_bn(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_backbone("wrn28_10")
def wrn28_10(
    layers: LayerFactory, num_classes: int, in_channels: int, *, width: float = 1.0
) -> WideResNet:
    """Wide ResNet-28-10: 3 stages x 4 pre-activation blocks, 160-320-640 channels."""
    return WideResNet(
        layers, num_classes, in_channels, depth=28, widen_factor=10, width=check_width(width)
    )

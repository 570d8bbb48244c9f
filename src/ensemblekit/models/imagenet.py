"""ImageNet-style ResNet-50 (7x7 stride-2 stem, max-pool, bottleneck blocks), written in the
same style as :mod:`ensemblekit.models.resnet` so that every method can place its layers.

The stride sits on the 3x3 convolution of a bottleneck (torchvision's "v1.5"). Drop sites are
every ``conv -> BN -> ReLU`` and the masked residual stream; each applies the ReLU itself::

    out = drop(bn1(conv1(x)))                # 1x1, reduce
    out = drop(bn2(conv2(out)))              # 3x3, stride
    out = bn3(conv3(out))                    # 1x1, expand x4
    out = drop(out + shortcut(x))            # shortcut: identity, or 1x1 conv + BN

Classic Dropout position (``placement="dropout"``): the residual stream of the last stage
(``drop3`` of its blocks), which the classifier reads after pooling (torchvision's ResNets have
no dropout; "before the classifier" is where one adds it).

No pretrained weights: train it, or load your own ``state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, check_width, scaled_width
from .factory import LayerFactory
from .registry import register_backbone
from .resnet import projection


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(self, layers: LayerFactory, in_channels: int, channels: int, stride: int,
                 *, classic: bool = False):
        """``classic``: the block's residual stream is a classic dropout position."""
        super().__init__()
        out_channels = layers.site_channels(channels * self.expansion, classic=classic)
        channels = layers.site_channels(channels)
        self.conv1 = layers.conv(in_channels, channels, 1)
        self.bn1 = layers.norm(channels)
        self.drop1 = layers.drop(channels)
        self.conv2 = layers.conv(channels, channels, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(channels)
        self.drop2 = layers.drop(channels)
        self.conv3 = layers.conv(channels, out_channels, 1)
        self.bn3 = layers.norm(out_channels)
        self.shortcut = projection(layers, in_channels, out_channels, stride)
        self.drop3 = layers.drop(out_channels, classic=classic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop1(self.bn1(self.conv1(x)))
        out = self.drop2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.drop3(out + self.shortcut(x))


class ImageNetResNet(Backbone):
    """7x7/2 stem -> 3x3/2 max-pool -> stages of :class:`Bottleneck` -> pool -> linear head."""

    def __init__(
        self,
        layers: LayerFactory,
        num_classes: int,
        in_channels: int,
        *,
        blocks_per_stage: tuple[int, ...],
        width: float,
    ) -> None:
        super().__init__()
        self.input_shape = (in_channels, None, None)
        channels = layers.site_channels(scaled_width(64, width))
        self.stem = layers.conv(in_channels, channels, 7, stride=2, padding=3, stem=True)
        self.stem_bn = layers.norm(channels)
        self.stem_drop = layers.drop(channels)
        blocks = []
        for stage, num_blocks in enumerate(blocks_per_stage):
            stage_channels = scaled_width(64 * 2**stage, width)
            for index in range(num_blocks):
                stride = 2 if stage > 0 and index == 0 else 1
                block = Bottleneck(layers, channels, stage_channels, stride,
                                   classic=stage == len(blocks_per_stage) - 1)
                blocks.append(block)
                channels = block.conv3.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = layers.linear(channels, num_classes, head=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem_drop(self.stem_bn(self.stem(x)))
        x = self.blocks(F.max_pool2d(x, 3, stride=2, padding=1))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


@register_backbone("resnet50")
def resnet50(
    layers: LayerFactory, num_classes: int, in_channels: int, *, width: float = 1.0
) -> ImageNetResNet:
    """ResNet-50 (He et al. 2016) for ImageNet-size inputs (224x224; any size >= 32 works)."""
    return ImageNetResNet(
        layers, num_classes, in_channels, blocks_per_stage=(3, 4, 6, 3), width=check_width(width)
    )

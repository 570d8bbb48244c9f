"""LeNet-5 style CNN for small grey or colour images (8x8 digits, 28x28 MNIST, 32x32 CIFAR).

Both convolutions pad by 2, so an input of H x W reaches the classifier as 16 channels of
(H/4) x (W/4) (8x8 -> 2x2, 28x28 -> 7x7). Classic LeNet has no BatchNorm, and neither has this
one: drop sites are each ``conv -> ReLU`` and each hidden ``Linear -> ReLU``, the drop site
applying the ReLU itself. Classic Dropout positions (``placement="dropout"``): the two hidden
fully connected layers (fc1, fc2), as in the usual LeNet-with-dropout and in the Masksembles
authors' MNIST example (masks on the flattened features before the classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Backbone, check_width, scaled_width, size_tuple
from .factory import LayerFactory
from .registry import register_backbone


class LeNet(Backbone):
    """conv(5x5, 6) -> pool -> conv(5x5, 16) -> pool -> fc 120 -> fc 84 -> logits."""

    def __init__(
        self,
        layers: LayerFactory,
        num_classes: int,
        in_channels: int,
        *,
        width: float,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        c1, c2 = (layers.site_channels(scaled_width(c, width)) for c in (6, 16))
        f1, f2 = (layers.site_channels(scaled_width(c, width), classic=True) for c in (120, 84))
        height, width_px = input_size
        self.input_shape = (in_channels, height, width_px)
        self.flat_area = (height // 4) * (width_px // 4)
        self.conv1 = layers.conv(in_channels, c1, 5, padding=2, bias=True, stem=True)
        self.drop1 = layers.drop(c1)
        self.conv2 = layers.conv(c1, c2, 5, padding=2, bias=True)
        self.drop2 = layers.drop(c2)
        self.fc1 = layers.linear(c2 * self.flat_area, f1)
        self.drop3 = layers.drop(f1, spatial=False, classic=True)
        self.fc2 = layers.linear(f1, f2)
        self.drop4 = layers.drop(f2, spatial=False, classic=True)
        self.head = layers.linear(f2, num_classes, head=True)
        self.stem_name = "conv1"

    def input_repeat(self, name: str) -> int:
        # fc1 reads the (C, H/4, W/4) maps flattened channel-major.
        return self.flat_area if name == "fc1" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = F.max_pool2d(self.drop1(self.conv1(x)), 2)
        x = F.max_pool2d(self.drop2(self.conv2(x)), 2)
        x = self.drop3(self.fc1(x.flatten(1)))
        x = self.drop4(self.fc2(x))
        return self.head(x)


@register_backbone("lenet")
def lenet(
    layers: LayerFactory,
    num_classes: int,
    in_channels: int,
    *,
    width: float = 1.0,
    input_size: int | tuple[int, int] = 28,
) -> LeNet:
    """LeNet for ``(B, in_channels, H, W)`` images with ``input_size`` H = W (int) or (H, W)."""
    size = size_tuple(input_size, minimum=4)
    if len(size) != 2:
        raise ValueError(f"lenet needs input_size as (H, W) or an int, got {input_size!r}")
    return LeNet(layers, num_classes, in_channels, width=check_width(width), input_size=size)

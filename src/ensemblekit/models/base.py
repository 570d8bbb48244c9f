"""What every backbone shares: an input check and a map of its layers' channel widths.

The map (:meth:`Backbone.layer_widths`) is what the Masksembles and MC-Dropout methods read to
say which channels each member keeps at every layer: a backbone built from a
:class:`~ensemblekit.models.factory.LayerFactory` has a drop site at every hidden activation,
so every layer reads channels that went through the drop site of its input width, and writes
channels that reach the drop site of its output width -- except the ``stem``, which reads the raw
input, and the ``head``, which writes the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_float, check_int, check_tensor
from ..layers.batchensemble import BatchEnsembleConv2d, BatchEnsembleLinear
from ..layers.packed import PackedLinear


@dataclass(frozen=True)
class LayerWidth:
    """One conv / linear / BatchNorm layer and the channel widths around it.

    Attributes:
        name: the module's path in the backbone (``named_modules`` style).
        module: the layer itself.
        in_size, out_size: the layer's sizes on dim 1 of its input and output (channels or
            features; both ``num_features`` for BatchNorm).
        in_width: channel count of the drop site feeding the layer's input; ``None`` for the
            raw network input (never masked).
        out_width: channel count of the drop site the layer's output reaches; ``None`` for the
            logits (never masked).
        in_repeat: each input channel spans this many consecutive input features (a linear
            layer after flattening ``(C, H, W)`` has ``in_repeat = H * W``); 1 otherwise.
        in_masked, out_masked: False where the drop site on that side is one that keeps every
            channel although other drop sites of the same width carry the method's masks (a
            backbone whose placement puts them at some sites of a width only says so here).
    """

    name: str
    module: nn.Module
    in_size: int
    out_size: int
    in_width: int | None
    out_width: int | None
    in_repeat: int = 1
    in_masked: bool = True
    out_masked: bool = True


def scaled_width(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the width multiplier of every backbone."""
    return max(1, int(round(channels * width)))


def check_width(width: float) -> float:
    return check_float("width", width, minimum=0.0, min_inclusive=False)


def size_tuple(input_size, *, minimum: int = 1) -> tuple[int, ...]:
    """An ``input_size`` argument as a tuple: an int ``s`` means a square ``(s, s)`` image."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if not isinstance(input_size, tuple | list) or not input_size:
        raise ValueError(f"input_size must be an int or a sequence of ints, got {input_size!r}")
    return tuple(check_int("input_size", s, minimum=minimum) for s in input_size)


def layer_sizes(module: nn.Module) -> tuple[int, int] | None:
    """(input, output) sizes on dim 1 of a conv, linear or BatchNorm layer; None otherwise."""
    if isinstance(module, (nn.modules.conv._ConvNd, BatchEnsembleConv2d)):
        return module.in_channels, module.out_channels
    if isinstance(module, (nn.Linear, BatchEnsembleLinear, PackedLinear)):
        return module.in_features, module.out_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features, module.num_features
    return None


class Backbone(nn.Module):
    """Base class of the backbones: checks inputs, knows its stem and its head.

    Subclasses set ``self.input_shape``, the shape of one example (``None`` for a dimension of
    any size: CIFAR ResNets pool globally and accept any height and width), and name the layer
    reading the raw input (``stem_name``) and the classifier (``head_name``), as paths in
    ``named_modules``. (Names, not aliases: a module registered twice would appear twice in
    ``state_dict`` and confuse ``torch.func.functional_call``.)
    """

    input_shape: tuple[int | None, ...]
    stem_name: str = "stem"
    head_name: str = "head"

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says what was expected if ``x`` does not fit.

        ``x`` must be a floating tensor of the parameters' dtype (any floating dtype under
        autocast) and of shape ``(B, *input_shape)``.
        """
        name = type(self).__name__
        check_tensor(f"{name} input", x)
        if not x.is_floating_point():
            raise ValueError(
                f"{name} expects floating-point inputs, got dtype {x.dtype}; convert them "
                "with x.float() (images scaled to [0, 1], as ensemblekit.data returns them)"
            )
        parameter = next(self.parameters(), None)
        if (parameter is not None and x.dtype != parameter.dtype
                and not torch.is_autocast_enabled(x.device.type)):
            raise ValueError(
                f"{name} has {parameter.dtype} parameters but got a {x.dtype} input; convert "
                f"the input with x.to({parameter.dtype}) (or the model with model.to(dtype))"
            )
        expected = self.input_shape
        fits = x.ndim == len(expected) + 1 and all(
            want is None or got == want for got, want in zip(x.shape[1:], expected, strict=False)
        )
        if not fits:
            dims = ", ".join("*" if d is None else str(d) for d in expected)
            raise ValueError(
                f"{name} expects inputs of shape (B, {dims}) "
                f"(in_channels={expected[0]}), got shape {tuple(x.shape)}; build the model with "
                "the in_channels (and input_size where the backbone has one) of your data"
            )

    def input_repeat(self, name: str) -> int:
        """How many input features each input channel of layer ``name`` spans (flattening)."""
        return 1

    def layer_widths(self) -> list[LayerWidth]:
        """Every conv, linear and BatchNorm layer with the channel widths it reads and writes."""
        widths = []
        for name, module in self.named_modules():
            sizes = layer_sizes(module)
            if sizes is None:
                continue
            repeat = self.input_repeat(name)
            in_width = None if name == self.stem_name else sizes[0] // repeat
            out_width = None if name == self.head_name else sizes[1]
            widths.append(LayerWidth(name, module, *sizes, in_width, out_width, repeat))
        return widths

"""How a backbone makes its layers: one factory per method, one backbone definition for all.

A backbone asks the factory for every convolution, linear layer, normalisation and "drop site":
every hidden activation, where dropout would go. A drop site owns its activation: the backbone
hands it the pre-activation, and it applies the ReLU and then the method's own operation, so a
method can fuse the two (Masksembles does: one autograd node instead of two). The plain factory
here gives the single model: ``torch.nn`` layers and ReLU drop sites. Each method in
:mod:`ensemblekit.methods` subclasses it (ReLU then Dropout at the drop sites, ReLU fused with
Masksembles there, BatchEnsemble convs and linears...), so where a method's layers go is decided
once, in the backbone.
"""

from __future__ import annotations

from torch import nn


class LayerFactory:
    """The layers of a single model; methods override what they change."""

    def conv(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ) -> nn.Module:
        """A 2-D convolution ``(B, in_channels, H, W) -> (B, out_channels, H', W')``."""
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )

    def linear(self, in_features: int, out_features: int, *, bias: bool = True) -> nn.Module:
        """A linear layer ``(B, in_features) -> (B, out_features)``."""
        return nn.Linear(in_features, out_features, bias=bias)

    def norm(self, channels: int) -> nn.Module:
        """Batch normalisation over dim 1 of ``(B, channels, H, W)``."""
        return nn.BatchNorm2d(channels)

    def drop(self, channels: int, *, spatial: bool = True) -> nn.Module:
        """A drop site: ReLU, then the method's operation, on ``channels`` channels on dim 1.

        It reads the pre-activation. ``spatial``: the input is ``(B, C, H, W)`` (True) or
        ``(B, C)`` (False). (Applying it to an activation already through a ReLU gives the same
        result: ReLU is idempotent.)
        """
        return nn.ReLU()

"""How a backbone makes its layers: one factory per method, one backbone definition for all.

A backbone asks the factory for every convolution, linear layer, normalisation and "drop site":
every hidden activation, where dropout would go. A drop site owns its activation: the backbone
hands it the pre-activation, and it applies the ReLU and then the method's own operation, so a
method can fuse the two (Masksembles does: one autograd node instead of two). The plain factory
here gives the single model: ``torch.nn`` layers and ReLU drop sites. Each method in
:mod:`ensemblekit.methods` subclasses it (ReLU then Dropout at the drop sites, ReLU fused with
Masksembles there, BatchEnsemble convs and linears...), so where a method's layers go is decided
once, in the backbone.

**Placement.** Every backbone marks the drop sites where its classic architecture puts Dropout
(``classic=True``: the hidden fully connected layers of LeNet and MLPs, the last stage of the
CIFAR ResNets, between the two convolutions of each Wide ResNet block, the residual stream of
ResNet-50's last stage; each backbone's docstring says which). A masking method built with
``placement="dropout"`` puts its masks / dropout only there and a plain ReLU at every other
drop site; ``placement="all"`` puts them at every drop site. **Width.** A backbone asks
:meth:`LayerFactory.site_channels` for the channel count of every layer that feeds a drop site,
so that a method built with ``widen=True`` can widen the layers it masks (by 1/keep: every
member then keeps the single model's channel count).
"""

from __future__ import annotations

from torch import nn

#: where a masking method puts its masks / dropout: at every drop site, or only at the drop
#: sites the backbone marks as its classic architecture's Dropout positions
PLACEMENTS = ("all", "dropout")


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
        stem: bool = False,
    ) -> nn.Module:
        """A 2-D convolution ``(B, in_channels, H, W) -> (B, out_channels, H', W')``.

        ``stem``: this layer reads the network's raw input (see :meth:`linear`).
        """
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )

    def linear(
        self, in_features: int, out_features: int, *, bias: bool = True, stem: bool = False,
        head: bool = False,
    ) -> nn.Module:
        """A linear layer ``(B, in_features) -> (B, out_features)``.

        ``stem``: it reads the network's raw input; ``head``: it writes the network's outputs
        (the logits). A method that changes the ends of the network (one that reads several
        inputs at once, or writes one output block per member) builds those two differently;
        the single model ignores both. An MLP without hidden layers has one linear, both.
        """
        return nn.Linear(in_features, out_features, bias=bias)

    def norm(self, channels: int) -> nn.Module:
        """Batch normalisation over dim 1 of ``(B, channels, H, W)``."""
        return nn.BatchNorm2d(channels)

    def drop(self, channels: int, *, spatial: bool = True, classic: bool = False) -> nn.Module:
        """A drop site: ReLU, then the method's operation, on ``channels`` channels on dim 1.

        It reads the pre-activation. ``spatial``: the input is ``(B, C, H, W)`` (True) or
        ``(B, C)`` (False). ``classic``: the classic architecture puts Dropout here (see
        Placement in the module docstring). (Applying it to an activation already through a
        ReLU gives the same result: ReLU is idempotent.)
        """
        return nn.ReLU()

    def site_channels(self, channels: int, *, classic: bool = False) -> int:
        """The channel count to build for a layer that feeds a drop site of ``channels``
        channels (``classic`` as in :meth:`drop`): ``channels`` itself unless the method widens
        the layers it masks."""
        return channels

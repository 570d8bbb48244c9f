"""Packed-Ensembles (Laurent et al., ICLR 2023): n independent members packed into one network
of grouped layers (:mod:`ensemblekit.layers.packed`).

Every convolution and linear layer of the backbone is widened by ``alpha`` and split into
``n * gamma`` groups, each member owning ``gamma`` of them; the first layer reads the plain
input (one group, each member through its own output rows), the head writes ``n * K`` logits,
one group per member. Members share no weight: ``alpha = n, gamma = 1`` is a deep ensemble of
the same backbone in one network, ``n = alpha = gamma = 1`` the single model. A hidden layer's
parameters are ``alpha^2 / (n * gamma)`` of the single model's (``alpha = 2, n = 4, gamma = 1``:
about the single model's count and FLOPs).

Training: every member sees the whole batch. ``model(x)`` returns ``(n*B, K)`` member-major
rows (the head's ``(B, n*K)`` rearranged) and ``training_targets(y)`` repeats ``y`` n times.
As for :mod:`~ensemblekit.methods.deep_ensemble`, the gradient flowing back into the members is
multiplied by n, so each member gets its own loss's gradient and the single model's learning
rate and weight decay mean what they mean for one member. (TorchUncertainty averages the loss
over the n*B rows instead, which gives each member 1/n of it: with SGD, its learning rate
divided by n.)

Inference: one forward of the ordinary batch gives all n members (no tiling).
:func:`ensemblekit.compile_members` folds BatchNorm and picks the fastest exact layout.

Widths and groups (:mod:`ensemblekit.layers.packed`): every hidden width is ``alpha * C``
rounded up to a multiple of n (:func:`~ensemblekit.layers.packed.packed_width`), and each
layer lowers gamma until its groups divide and read at least 64 channels
(:func:`~ensemblekit.layers.packed.packed_gamma`, TorchUncertainty's rule): measured better on
digits than keeping gamma everywhere (the numbers are in the layers' module docstring). A
layer's ``gamma`` attribute says what it got.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_float, check_int
from ..layers.packed import (
    PackedConv2d,
    PackedLinear,
    member_network,
    packed_gamma,
    packed_width,
)
from ..members import repeat_members
from ..models.factory import LayerFactory
from .base import EnsembleModel, scale_member_gradients
from .registry import register_method


class PackedLayers(LayerFactory):
    """Packed convolutions and linear layers: every hidden width ``packed_width(C, alpha, n)``,
    each layer's gamma ``packed_gamma`` of the one asked for; the first layer reads the plain
    input, the head writes n*K logits (one group per member). BatchNorm (per channel, hence per
    member) and ReLU drop sites as in single."""

    def __init__(self, n: int, alpha: float, gamma: int) -> None:
        self.n, self.alpha, self.gamma = n, alpha, gamma

    def site_channels(self, channels: int, *, classic: bool = False) -> int:
        # every hidden width of a backbone is asked for here, flattened ones included (LeNet's
        # fc1 reads site_channels(c2) * H * W features: each member's channels contiguous)
        return packed_width(channels, self.alpha, self.n)

    def _gamma(self, size_in: int, size_out: int, stem: bool) -> int:
        return 1 if stem else packed_gamma(size_in, size_out, self.n, self.gamma)

    def conv(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bias=False,
             stem=False):
        return PackedConv2d(in_channels, out_channels, kernel_size, self.n,
                            gamma=self._gamma(in_channels, out_channels, stem), first=stem,
                            stride=stride, padding=padding, bias=bias)

    def linear(self, in_features, out_features, *, bias=True, stem=False, head=False):
        if head:  # n*K logits, one group per member
            return PackedLinear(in_features, self.n * out_features, self.n, first=stem,
                                bias=bias)
        return PackedLinear(in_features, out_features, self.n,
                            gamma=self._gamma(in_features, out_features, stem), first=stem,
                            bias=bias)


class PackedEnsembleModel(EnsembleModel):
    """A backbone built from :class:`PackedLayers`: ``n`` members in one network.

    ``forward``: ``(B, ...) -> (n*B, K)`` member-major; ``forward_members``: ``(n, B, K)``.
    """

    method = "packed_ensemble"

    def __init__(self, backbone: nn.Module, n: int, *, alpha: float, gamma: int) -> None:
        super().__init__(n)
        self.backbone = backbone
        self.alpha, self.gamma = alpha, gamma

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, B, K)``: the head's ``(B, n*K)`` split member-major."""
        logits = self.backbone(x)
        return logits.unflatten(1, (self.num_members, -1)).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...) -> (n*B, K)``: member m's logits in rows ``m*B:(m+1)*B``."""
        return scale_member_gradients(self._members(x).flatten(0, 1), self.num_members)

    def training_targets(self, y: torch.Tensor) -> torch.Tensor:
        return repeat_members(y, self.num_members)

    def forward_members(self, x: torch.Tensor, num_samples: int | None) -> torch.Tensor:
        return self._members(x).contiguous()

    @torch.no_grad()
    def member_weights(self) -> torch.Tensor:
        """``(n, P)``: member m's own rows of every parameter, flattened (every parameter of a
        packed backbone is member-major on dim 0); P is one member's parameter count."""
        count = self.num_members
        return torch.cat([p.reshape(count, -1) for p in self.backbone.parameters()], dim=1)

    def member_weight_columns(self, module: nn.Module) -> int:
        """A member owns ``1/n`` of every parameter (its rows on dim 0)."""
        return sum(p.numel() for p in module.parameters(recurse=False)) // self.num_members

    def member_features(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """``(n, B, ...)``: member m's channel block (dim 1; the features, last, of what a
        :class:`~ensemblekit.layers.packed.PackedLinear` reads): what its own network reads."""
        dim = x.ndim - 1 if isinstance(layer, PackedLinear) else 1
        return x.unflatten(dim, (self.num_members, -1)).movedim(dim, 0)

    def member_network(self, member: int) -> nn.Module:
        """A copy of the backbone computing member ``member`` alone: ``(B, ...) -> (B, K)``,
        plain ``nn.Conv2d`` / ``nn.Linear`` layers (grouped ``gamma`` ways) and BatchNorm of
        the member's width (:func:`~ensemblekit.layers.packed.member_network`)."""
        return member_network(self.backbone, self.num_members, member)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}, gamma={self.gamma}"


def _construction(options) -> str:
    return (f"independent groups by construction (alpha={options['alpha']:g}, "
            f"gamma={options['gamma']}): members share no weight, cosine ~ 0 at initialisation "
            "in every conv and linear layer, and each member's representation is its own "
            "channel block (CKA between members that of independently initialised networks)")


@register_method(
    "packed_ensemble", label="Packed-Ensembles", color="#e377c2", marker="X",
    global_keys={"members": "n"},
    construction=_construction,
    member_width=lambda options: options["alpha"] / options["n"],
    # alpha 2 is the paper's (about the single model's parameters at n=4), alpha = n a deep
    # ensemble in one network; gamma 2 the paper's CIFAR setting (fewer parameters in the
    # layers wide enough for it: LeNet x3's fc2 on digits)
    tune_grid={"alpha": [2.0, 3.0, 4.0], "gamma": [1, 2]},
    compiled_inference=True,
)
def packed_ensemble(
    make_backbone: Callable, *, seed: int, n: int = 4, alpha: float = 2.0, gamma: int = 1,
) -> PackedEnsembleModel:
    """``n`` members, every hidden width ``alpha`` times the single model's (rounded up to a
    multiple of n: :func:`~ensemblekit.layers.packed.packed_width`), each member split into
    ``gamma`` groups in the layers wide enough (:func:`~ensemblekit.layers.packed.packed_gamma`:
    at least 64 input channels per group)."""
    n = check_int("n", n, minimum=1)
    alpha = check_float("alpha", alpha, minimum=0.0, min_inclusive=False)
    gamma = check_int("gamma", gamma, minimum=1)
    backbone = make_backbone(PackedLayers(n, alpha, gamma), seed)
    return PackedEnsembleModel(backbone, n, alpha=alpha, gamma=gamma)

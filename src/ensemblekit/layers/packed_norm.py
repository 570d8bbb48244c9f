r"""Per-member normalisation over packed widths: LayerNorm and GroupNorm for Packed-Ensembles.

BatchNorm is per channel and so already per member (:mod:`.packed`). LayerNorm and GroupNorm
mix channels: over a packed width of n members side by side they would make every member read
the others' statistics. Here member m normalises only its own block of the channels (member-
major: channels ``[m C/n, (m+1) C/n)``), with its own affine parameters:

* :class:`PackedLayerNorm`: ``nn.LayerNorm((C/n, *rest))`` per member, ``normalized_shape =
  (C, *rest)`` packed on its first dimension (the features of a linear layer when it is
  ``(C,)``, the channels of ``(B, C, H, W)`` when it is ``(C, H, W)``);
* :class:`PackedGroupNorm`: ``nn.GroupNorm(G, C/n)`` per member, which over the packed width is
  exactly ``nn.GroupNorm(n * G, C)`` (the groups are contiguous, so member m owns groups
  ``[m G, (m+1) G)``).

Every parameter is member-major on dim 0 (``p.chunk(n)[m]`` is member m's), as in
:mod:`.packed`, and :meth:`member_layer` returns a member's own torch layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int, check_tensor
from .packed import copy_member_rows


def _member_channels(layer: str, name: str, channels: int, step: int, n: int) -> int:
    if channels % step:
        raise ValueError(
            f"{layer}: {name}={channels} is not a multiple of {step} (n={n} members); build "
            "widths with ensemblekit.layers.packed.packed_width"
        )
    return channels // n


class PackedLayerNorm(nn.Module):
    r"""LayerNorm of ``n`` members side by side: member m normalises its block of the first
    normalised dimension (and the rest whole), with its own weight and bias.

    Args:
        normalized_shape: ``(C, *rest)``, C the packed width (a multiple of n), as in
            ``nn.LayerNorm``.
        n: members.
        eps, elementwise_affine, bias: as in ``nn.LayerNorm``.

    Shape:
        ``(*, C, *rest) -> (*, C, *rest)``; in each member's block
        :math:`y = (x - \mathrm{E}[x]) / \sqrt{\mathrm{Var}[x] + \epsilon} \cdot w_m + b_m`
        over its ``(C/n, *rest)`` entries.
    """

    def __init__(self, normalized_shape, n: int, *, eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(check_int("normalized_shape", size, minimum=1)
                                      for size in shape)
        if not self.normalized_shape:
            raise ValueError("PackedLayerNorm: normalized_shape must name at least one size")
        self.n = check_int("n", n, minimum=1)
        _member_channels(type(self).__name__, "normalized_shape[0]", self.normalized_shape[0],
                         self.n, self.n)
        self.eps, self.elementwise_affine = eps, bool(elementwise_affine)
        options = {"device": device, "dtype": dtype}
        self.weight = (nn.Parameter(torch.ones(self.normalized_shape, **options))
                       if self.elementwise_affine else None)
        self.bias = (nn.Parameter(torch.zeros(self.normalized_shape, **options))
                     if self.elementwise_affine and bias else None)

    def _member_shape(self) -> tuple[int, ...]:
        return (self.normalized_shape[0] // self.n, *self.normalized_shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        dims = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - dims:]) != self.normalized_shape:
            raise ValueError(f"PackedLayerNorm was built for normalized_shape="
                             f"{self.normalized_shape} but got an input of shape "
                             f"{tuple(x.shape)}")
        member_shape = self._member_shape()
        blocks = x.unflatten(x.ndim - dims, (self.n, member_shape[0]))  # (*, n, C/n, *rest)
        y = F.layer_norm(blocks, member_shape, eps=self.eps)
        if self.weight is not None:
            y = y * self.weight.view(self.n, *member_shape)
        if self.bias is not None:
            y = y + self.bias.view(self.n, *member_shape)
        return y.flatten(x.ndim - dims, x.ndim - dims + 1)

    def member_layer(self, member: int) -> nn.LayerNorm:
        """Member ``member``'s own ``nn.LayerNorm((C/n, *rest))``, a copy."""
        member = check_int("member", member, minimum=0, maximum=self.n - 1)
        reference = self.weight
        layer = nn.LayerNorm(self._member_shape(), eps=self.eps,
                             elementwise_affine=self.elementwise_affine,
                             bias=self.bias is not None,
                             device=None if reference is None else reference.device,
                             dtype=None if reference is None else reference.dtype)
        copy_member_rows(self, layer, member)
        return layer

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, n={self.n}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class PackedGroupNorm(nn.GroupNorm):
    """GroupNorm of ``n`` members side by side: ``nn.GroupNorm(n * num_groups, num_channels)``,
    so member m's ``num_groups`` groups hold only its own channels.

    Args:
        num_groups: groups per member (the unpacked layer's).
        num_channels: the packed width, a multiple of ``n * num_groups``.
        n: members.
        eps, affine: as in ``nn.GroupNorm``.

    Shape: ``(B, num_channels, *) -> (B, num_channels, *)``.
    """

    def __init__(self, num_groups: int, num_channels: int, n: int, *, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None) -> None:
        n = check_int("n", n, minimum=1)
        num_groups = check_int("num_groups", num_groups, minimum=1)
        num_channels = check_int("num_channels", num_channels, minimum=1)
        _member_channels(type(self).__name__, "num_channels", num_channels, n * num_groups, n)
        super().__init__(n * num_groups, num_channels, eps=eps, affine=affine, device=device,
                         dtype=dtype)
        self.n, self.member_groups = n, num_groups

    def member_layer(self, member: int) -> nn.GroupNorm:
        """Member ``member``'s own ``nn.GroupNorm(num_groups, num_channels / n)``, a copy."""
        member = check_int("member", member, minimum=0, maximum=self.n - 1)
        layer = nn.GroupNorm(self.member_groups, self.num_channels // self.n, eps=self.eps,
                             affine=self.affine)
        if self.affine:
            layer = layer.to(device=self.weight.device, dtype=self.weight.dtype)
        copy_member_rows(self, layer, member)
        return layer

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n={self.n}"

r"""MIMO's two ends (Havasi et al., ICLR 2021): a stem that reads M inputs stacked on channels,
a head that writes one block of outputs per member.

Both read and write the member-major layout of :mod:`ensemblekit.members`. The stem reads
``M*R`` rows whose block m (rows ``m*R:(m+1)*R``) is what input slot m sees, and stacks the
slots on channels: row r of the stacked batch holds the M slot inputs, slot-major,
``(R, M*C, ...)``. Everything between stem and head runs on those R rows, shared by every
member. The head writes ``(R, M*K)`` and returns member-major ``(M*R, K)``: member m's outputs
are rows ``m*R:(m+1)*R``. With the same input in every slot (inference), one pass of one
network gives M members, and the stem need not read M copies of it: within
:func:`shared_slots` it reads the plain batch ``(B, C, ...)`` with its slot weights summed,
:math:`\sum_j W_j * x = (\sum_j W_j) * x`, a single model's stem (equal to the tiled pass up to
rounding).

Slot m's weights are the stem's input channels ``m*C:(m+1)*C`` (columns of its weight) and
member m's are the head's output rows ``m*K:(m+1)*K``:

.. math::  h = \sum_j W_j * x_j, \qquad y_m = V_m\, f(h) + c_m

so member m's output depends on every slot's input (the stem sums them into one
representation); training on slot m's label for head m is what teaches the network to route
slot m to head m and ignore the rest (the paper's finding; tests/test_mimo.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int


def stack_slots(x: torch.Tensor, members: int) -> torch.Tensor:
    """``(M*R, C, ...) -> (R, M*C, ...)``: block m of a member-major batch becomes channels
    ``m*C:(m+1)*C`` of every row (works for vectors ``(M*R, F) -> (R, M*F)`` too)."""
    if x.ndim < 2 or x.shape[0] % members != 0:
        raise ValueError(
            f"a MIMO stem with {members} input slots reads a member-major batch of M*R rows "
            f"(slot m: rows m*R:(m+1)*R), got shape {tuple(x.shape)}; tile an ordinary batch "
            "with ensemblekit.repeat_members(x, M)"
        )
    return x.unflatten(0, (members, -1)).transpose(0, 1).flatten(1, 2)


def unstack_members(y: torch.Tensor, members: int) -> torch.Tensor:
    """``(R, M*K) -> (M*R, K)``: the head's member blocks on dim 1 become member-major rows."""
    return y.unflatten(1, (members, -1)).transpose(0, 1).flatten(0, 1)


class MIMOConv2d(nn.Conv2d):
    """A convolution reading ``members`` input slots stacked on channels: the MIMO stem.

    ``(M*R, in_channels, H, W) -> (R, out_channels, H', W')``; the weight is
    ``(out_channels, M*in_channels, k, k)`` (``self.in_channels`` is ``M*in_channels``),
    initialised as a plain convolution over M*in_channels channels (the reference does the
    same).
    """

    #: every slot reads the same input, given once: ``(B, in_channels, H, W)`` (see
    #: :func:`shared_slots`)
    shared_input = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, members: int,
                 **kwargs) -> None:
        self.members = check_int("members", members, minimum=1)
        self.slot_channels = check_int("in_channels", in_channels, minimum=1)
        super().__init__(self.members * self.slot_channels, out_channels, kernel_size, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared_input:
            return self._conv_forward(x, self.slot_weights().sum(0), self.bias)
        return super().forward(stack_slots(x, self.members))

    def slot_weights(self) -> torch.Tensor:
        """``(M, out_channels, in_channels, k, k)``: the weight columns that read each slot."""
        return self.weight.unflatten(1, (self.members, self.slot_channels)).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, members={self.members}"


class MIMOLinear(nn.Linear):
    """A linear layer at one or both ends of a MIMO network.

    ``stem``: it reads ``members`` slots stacked on features, ``(M*R, in_features) -> (R, ...)``
    (weight columns ``m*in_features:(m+1)*in_features`` read slot m). ``head``: it writes one
    block of ``out_features`` per member and returns them member-major, ``(R, ...) ->
    (M*R, out_features)`` (weight rows ``m*out_features:(m+1)*out_features`` are member m's).
    Both: the one layer of an MLP without hidden layers. The stored weight is
    ``(M*out_features if head else out_features, M*in_features if stem else in_features)``.
    """

    #: a stem whose slots all read the same input, given once (see :func:`shared_slots`)
    shared_input = False

    def __init__(self, in_features: int, out_features: int, members: int, *, stem: bool = False,
                 head: bool = False, bias: bool = True) -> None:
        self.members = check_int("members", members, minimum=1)
        if not (stem or head):
            raise ValueError("MIMOLinear is a MIMO stem or head: pass stem=True, head=True or "
                             "both (a layer in between is a plain nn.Linear)")
        self.stem, self.head = bool(stem), bool(head)
        self.slot_features = check_int("in_features", in_features, minimum=1)
        self.member_features = check_int("out_features", out_features, minimum=1)
        super().__init__(in_features * (self.members if stem else 1),
                         out_features * (self.members if head else 1), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem and self.shared_input:
            y = F.linear(x, self.weight.unflatten(1, (self.members, -1)).sum(1), self.bias)
        else:
            y = super().forward(stack_slots(x, self.members) if self.stem else x)
        return unstack_members(y, self.members) if self.head else y

    def member_blocks(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per member m: the weight entries that are its own, ``(M, ...)``, and its bias.

        Stem: the columns reading slot m (bias shared, repeated); head: the rows writing
        member m and its bias block; both: the diagonal block (slot m into member m).
        """
        m, out_size, in_size = self.members, self.member_features, self.slot_features
        weight = self.weight.reshape(m if self.head else 1, out_size, m if self.stem else 1,
                                     in_size)
        if self.stem and self.head:
            weight = weight.diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        elif self.stem:
            weight = weight[0].transpose(0, 1)
        else:
            weight = weight[:, :, 0]
        bias = self.bias
        if bias is not None:
            bias = bias.reshape(m, out_size) if self.head else bias.expand(m, out_size)
        return weight, bias

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, members={self.members}, stem={self.stem}, " \
               f"head={self.head}"


#: the layer classes of a MIMO network's two ends
MIMO_LAYERS = (MIMOConv2d, MIMOLinear)


@contextmanager
def shared_slots(module: nn.Module) -> Iterator[None]:
    """Within the block, every MIMO stem in ``module`` reads one plain batch ``(B, ...)`` as the
    input of all its slots (slot weights summed) instead of a member-major ``(M*B, ...)``
    batch: the inference pass without tiling. Restored on exit."""
    stems = [m for m in module.modules() if isinstance(m, MIMOConv2d)
             or (isinstance(m, MIMOLinear) and m.stem)]
    try:
        for stem in stems:
            stem.shared_input = True
        yield
    finally:
        for stem in stems:
            stem.shared_input = False

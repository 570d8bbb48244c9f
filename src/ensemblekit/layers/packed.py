r"""Packed-Ensembles layers (Laurent et al., ICLR 2023): n members side by side in one layer.

A packed layer is a grouped layer whose groups belong to members. With ``n`` members and
``gamma`` groups per member, a layer of ``C_in -> C_out`` channels has ``G = n * gamma``
groups; channels are member-major on dim 1: member :math:`m` owns the contiguous block
:math:`[m C/n, (m+1) C/n)` of every width C, and group :math:`g` the block
:math:`[g C/G, (g+1) C/G)`. Group :math:`g` reads only its own input block:

.. math::  y_g = W_g * x_g + b_g, \qquad W_g \in \mathbb{R}^{C_{out}/G \times C_{in}/G
           \times k \times k}

so a member never reads another member's channels, and no weight is shared: the n members are
n independent networks computed by one. The layer that reads the network's raw input
(``first=True``) has one group: every member reads the whole input through its own output rows
(member m's rows of W). A network of packed layers ends in a head with ``n * K`` outputs, one
group per member, whose ``(B, n*K)`` output the model rearranges into member-major
``(n*B, K)`` rows.

Both layers keep torch's layout: ``PackedConv2d`` *is* an ``nn.Conv2d`` with ``groups = G``
(weight ``(C_out, C_in/G, k, k)``), and ``PackedLinear`` holds the same ``(out, in/G)`` weight
that ``nn.Conv1d`` with kernel 1 would. Every parameter is member-major on dim 0, so member
m's slice of any parameter is ``p.chunk(n)[m]`` (:meth:`member_layer`).

**Normalisation.** BatchNorm over a packed width normalises each channel on its own, and each
channel belongs to one member: ``nn.BatchNorm2d(C)`` is already per member (in training every
member sees the whole batch, so a member's statistics are those its own network would
compute). No special layer is needed; a norm that mixes channels (LayerNorm, GroupNorm across
members) would not be per member, and no backbone here uses one.

**Widths and groups** (TorchUncertainty's rule, measured best here): a hidden width is
``alpha * C`` rounded up to a multiple of n (:func:`packed_width`; every member gets whole
channels, never fewer than ``alpha * C / n``), and each layer lowers gamma until its groups
divide its input and output and read at least :data:`MIN_GROUP_CHANNELS` = 64 channels each
(:func:`packed_gamma`). So gamma only splits wide layers (n=4, gamma=2: inputs of 512 packed
channels or more): ResNet-20 keeps one group per member everywhere, LeNet x3 (digits) splits
its fc2 only (720 inputs at alpha=2), the CIFAR ResNet-18 its last two stages. Measured on
digits (validation split, 3 seeds, n=4, gamma=2, ``docs/experiments/packed_rule.py``), mean
validation NLL, against rounding widths up to a multiple of ``n * gamma`` and keeping gamma
everywhere, and against lowering gamma only where the channels do not divide:

===================  ============  ============  ==========
rule                 LeNet x3 a=2  LeNet x3 a=3  MLP a=2
===================  ============  ============  ==========
TU (>= 64/group)     0.044         0.028         0.344
lower where needed   0.047         0.038         (round up)
round up to n*gamma  0.055         0.039         0.406
(gamma 1: reference) 0.042         0.026         0.344
===================  ============  ============  ==========

Sub-groups of a few channels cost accuracy on these small nets (TU's rule beat rounding up in
every seed of every column); the floor keeps gamma only where groups stay wide, and builds
TorchUncertainty's (the paper's) architectures.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_float, check_int, check_tensor

#: a layer keeps gamma groups per member only while each group reads this many input channels
MIN_GROUP_CHANNELS = 64


def packed_width(channels: int, alpha: float, n: int) -> int:
    """``alpha * channels`` rounded up to a multiple of ``n`` (at least ``n``).

    >>> packed_width(18, 1.5, 4)    # 27 channels -> 28: 7 per member
    28
    """
    channels = check_int("channels", channels, minimum=1)
    alpha = check_float("alpha", alpha, minimum=0.0, min_inclusive=False)
    n = check_int("n", n, minimum=1)
    # round() first: 1.1 * 10 is 11.000000000000002, which must stay 11
    return n * max(1, math.ceil(round(alpha * channels, 6) / n))


def packed_gamma(size_in: int, size_out: int, n: int, gamma: int, *,
                 minimum: int = MIN_GROUP_CHANNELS) -> int:
    """The groups per member a layer ``size_in -> size_out`` gets when ``gamma`` is asked for:
    gamma, lowered while ``n * gamma`` does not divide both sizes or a group would read fewer
    than ``minimum`` input channels (TorchUncertainty's rule; 1 at the least).

    >>> packed_gamma(512, 512, 4, 2), packed_gamma(256, 256, 4, 2)
    (2, 1)
    """
    n, gamma = check_int("n", n, minimum=1), check_int("gamma", gamma, minimum=1)
    while gamma > 1 and (size_in % (n * gamma) or size_out % (n * gamma)
                         or size_in // (n * gamma) < minimum):
        gamma -= 1
    return gamma


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   groups: int) -> torch.Tensor:
    """``(*, in) -> (*, out)``: feature block g of ``x`` through ``weight``'s rows of group g.

    ``weight``: ``(out, in / groups)``, group g owning rows ``[g out/G, (g+1) out/G)``;
    ``bias``: ``(out,)`` or None. One batched matmul over the groups (measured fastest on the
    CPU among bmm, einsum and grouped conv1d, ``benchmarks/cheap_ensembles.py``).
    """
    if groups == 1:
        return F.linear(x, weight, bias)
    size_out, size_in = weight.shape[0] // groups, weight.shape[1]
    rows = x.reshape(-1, groups, size_in).transpose(0, 1)  # (G, N, in/G)
    weight_t = weight.view(groups, size_out, size_in).transpose(1, 2)  # (G, in/G, out/G)
    if bias is None:
        out = torch.bmm(rows, weight_t)
    else:
        out = torch.baddbmm(bias.view(groups, 1, size_out), rows, weight_t)
    return out.transpose(0, 1).reshape(*x.shape[:-1], groups * size_out)


def _groups(layer: str, size_in: int, size_out: int, n: int, gamma: int, first: bool,
            side: tuple[str, str]) -> int:
    """The layer's group count ``1 if first else n * gamma``; a clear error when the sizes
    do not divide (``side``: the argument names, channels or features)."""
    n = check_int("n", n, minimum=1)
    gamma = check_int("gamma", gamma, minimum=1)
    size_in, size_out = (check_int(name, size, minimum=1)
                         for name, size in zip(side, (size_in, size_out), strict=True))
    groups = 1 if first else n * gamma
    for name, size, step in ((side[0], size_in, groups), (side[1], size_out, n * gamma)):
        if size % step:
            raise ValueError(
                f"{layer}: {name}={size} is not a multiple of {step} "
                f"(n={n} members x gamma={gamma} groups each); build widths with "
                "ensemblekit.layers.packed.packed_width and gamma with packed_gamma"
            )
    return groups


class _PackedConv:
    """What :class:`PackedConv1d` and :class:`PackedConv2d` share: ``groups = n * gamma``
    (1 when ``first``), the member's own convolution, the repr. ``_plain``: the torch class."""

    _plain: type[nn.modules.conv._ConvNd]

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size, n: int, *, gamma: int = 1,
        first: bool = False, stride=1, padding=0, dilation=1, bias: bool = True,
        padding_mode: str = "zeros", device=None, dtype=None,
    ) -> None:
        groups = _groups(type(self).__name__, in_channels, out_channels, n, gamma, first,
                         ("in_channels", "out_channels"))
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self.n, self.gamma, self.first = n, gamma, bool(first)

    def member_layer(self, member: int) -> nn.modules.conv._ConvNd:
        """Member ``member``'s own convolution, a copy: ``(B, in/n, *L) -> (B, out/n, *L')``
        with ``gamma`` groups (``(B, in, *L)``, one group, for the first layer)."""
        member = check_int("member", member, minimum=0, maximum=self.n - 1)
        layer = self._plain(
            self.in_channels if self.first else self.in_channels // self.n,
            self.out_channels // self.n, self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation,
            groups=1 if self.first else self.gamma, bias=self.bias is not None,
            padding_mode=self.padding_mode, device=self.weight.device, dtype=self.weight.dtype)
        copy_member_rows(self, layer, member)
        return layer

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n={self.n}, gamma={self.gamma}, first={self.first}"


class PackedConv2d(_PackedConv, nn.Conv2d):
    r"""A 2-D convolution holding ``n`` members, ``gamma`` groups each.

    ``nn.Conv2d(in_channels, out_channels, kernel_size, groups=n*gamma)`` (``groups=1`` when
    ``first``): output block g is :math:`W_g * x_g + b_g` over input block g (module
    docstring). Member m owns output channels ``[m*out/n, (m+1)*out/n)``.

    Args:
        in_channels, out_channels: the packed widths (``packed_width(C, alpha, n)``;
            ``in_channels`` is the raw input's when ``first``).
        kernel_size, stride, padding, dilation, bias, padding_mode: as in ``nn.Conv2d``.
        n: members.
        gamma: groups per member (``in_channels`` and ``out_channels`` multiples of
            ``n * gamma``; :func:`packed_gamma` lowers an asked-for gamma to one that fits).
        first: the layer reads the network's raw input: one group, every member's rows read
            every input channel.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H', W')``. The weight is stored
        channels-last (faster grouped convolutions on the CPU; nothing else changes).
    """

    _plain = nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, n: int,
                 **options) -> None:
        super().__init__(in_channels, out_channels, kernel_size, n, **options)
        # Channels-last weights: the convolution then runs (and hands the next layer) the
        # channels-last layout, in which oneDNN's grouped kernels are faster on the CPU: the
        # packed ResNet-20 predicts 1.19-1.41x faster, LeNet 1.10x, than with contiguous
        # weights (benchmarks/cheap_ensembles.py, one thread, batch 256). Values, state_dict
        # keys and shapes are unchanged; .to() keeps the format.
        self.weight = nn.Parameter(self.weight.detach().contiguous(
            memory_format=torch.channels_last))


class PackedConv1d(_PackedConv, nn.Conv1d):
    """A 1-D convolution holding ``n`` members, ``gamma`` groups each: :class:`PackedConv2d`
    over ``(B, in_channels, L) -> (B, out_channels, L')`` (arguments as there and as in
    ``nn.Conv1d``)."""

    _plain = nn.Conv1d


class PackedLinear(nn.Module):
    r"""A linear layer holding ``n`` members, ``gamma`` groups each.

    Feature block g of the input goes through group g's weights:
    :math:`y_g = x_g W_g^\top + b_g` with :math:`W_g` of shape ``(out/G, in/G)``,
    ``G = n * gamma`` (one group, a plain linear layer, when ``first``). Member m owns output
    features ``[m*out/n, (m+1)*out/n)``. Initialised as ``nn.Linear`` initialises each group
    (uniform, bound ``1/sqrt(in/G)``).

    Args:
        in_features, out_features: the packed sizes (the head: ``n * K`` outputs, ``gamma=1``).
        n, gamma, first: as in :class:`PackedConv2d`.
        bias: learn a bias.

    Shape:
        ``(*, in_features) -> (*, out_features)``.

    Attributes:
        weight: ``(out_features, in_features / groups)``, group g's rows
            ``[g*out/G, (g+1)*out/G)``.
        bias: ``(out_features,)`` or None.
    """

    def __init__(self, in_features: int, out_features: int, n: int, *, gamma: int = 1,
                 first: bool = False, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        self.groups = _groups(type(self).__name__, in_features, out_features, n, gamma, first,
                              ("in_features", "out_features"))
        self.in_features, self.out_features = in_features, out_features
        self.n, self.gamma, self.first = n, gamma, bool(first)
        self.weight = nn.Parameter(torch.empty(out_features, in_features // self.groups,
                                               device=device, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's init on the (out, in/G) weight: the fan-in is each group's own
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight.shape[1]) if self.weight.shape[1] else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"PackedLinear was built for in_features={self.in_features} but "
                             f"got an input of shape {tuple(x.shape)}")
        return grouped_linear(x, self.weight, self.bias, self.groups)

    def member_layer(self, member: int) -> nn.Module:
        """Member ``member``'s own layer, a copy: ``nn.Linear`` for one group per member (or
        the first layer), else a ``PackedLinear`` with ``n=1`` and this ``gamma``."""
        member = check_int("member", member, minimum=0, maximum=self.n - 1)
        size_in = self.in_features if self.first else self.in_features // self.n
        options = {"bias": self.bias is not None, "device": self.weight.device,
                   "dtype": self.weight.dtype}
        if self.first or self.gamma == 1:
            layer = nn.Linear(size_in, self.out_features // self.n, **options)
        else:
            layer = PackedLinear(size_in, self.out_features // self.n, 1, gamma=self.gamma,
                                 **options)
        copy_member_rows(self, layer, member)
        return layer

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n={self.n}, gamma={self.gamma}, groups={self.groups}, first={self.first}, "
                f"bias={self.bias is not None}")


def member_batchnorm(norm: nn.modules.batchnorm._BatchNorm, n: int,
                     member: int) -> nn.modules.batchnorm._BatchNorm:
    """A copy of BatchNorm ``norm`` restricted to member ``member``'s channels (of ``n``)."""
    layer = type(norm)(norm.num_features // n, eps=norm.eps, momentum=norm.momentum,
                       affine=norm.affine, track_running_stats=norm.track_running_stats)
    reference = norm.weight if norm.affine else norm.running_mean
    if reference is not None:
        layer = layer.to(device=reference.device, dtype=reference.dtype)
    copy_member_rows(norm, layer, member, n)
    return layer


@torch.no_grad()
def copy_member_rows(packed: nn.Module, layer: nn.Module, member: int,
                     n: int | None = None) -> None:
    """Copy member ``member``'s rows (dim 0, member-major) of every parameter and buffer of
    ``packed`` into ``layer``; scalar buffers (``num_batches_tracked``) are copied whole."""
    n = packed.n if n is None else n
    state = {**dict(packed.named_parameters(recurse=False)),
             **dict(packed.named_buffers(recurse=False))}
    for name, target in [*layer.named_parameters(recurse=False),
                         *layer.named_buffers(recurse=False)]:
        source = state[name]
        if target is None or source is None:
            continue
        target.copy_(source.chunk(n)[member] if source.ndim else source)


def member_network(network: nn.Module, n: int, member: int) -> nn.Module:
    """A copy of ``network`` (packed layers, BatchNorm and parameter-free modules) computing
    member ``member`` alone: every packed layer (a module with a ``member_layer`` method:
    :meth:`PackedConv2d.member_layer`, :meth:`PackedLinear.member_layer`, the packed norms of
    :mod:`.packed_norm`) becomes its member's layer, every BatchNorm :func:`member_batchnorm`.
    Its output is the member's block of the packed network's (the head: its K logits)."""
    member = check_int("member", member, minimum=0, maximum=check_int("n", n, minimum=1) - 1)
    for name, module in network.named_modules():
        if _splits(module) or isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        if any(True for _ in module.parameters(recurse=False)) or any(
                buffer is not None for buffer in module.buffers(recurse=False)):
            raise NotImplementedError(
                f"member_network: {name!r} ({type(module).__name__}) has parameters or buffers "
                "but is not a packed layer or BatchNorm: its members cannot be told apart")
    copied = copy.deepcopy(network)
    _split_children(copied, n, member)
    return copied


def _split_children(module: nn.Module, n: int, member: int) -> None:
    for name, child in module.named_children():
        if _splits(child):
            setattr(module, name, child.member_layer(member))
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, member_batchnorm(child, n, member))
        else:
            _split_children(child, n, member)


def _splits(module: nn.Module) -> bool:
    """Whether ``module`` is a packed layer that builds each member's own copy."""
    return callable(getattr(module, "member_layer", None))

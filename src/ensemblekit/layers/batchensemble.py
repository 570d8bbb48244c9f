r"""BatchEnsemble layers (Wen, Tran & Ba, 2020): shared weights, rank-1 fast weights per member.

Member :math:`i` of :math:`n` uses the effective weight :math:`W_i = W \circ (s_i r_i^\top)` (in
torch's ``(out, in)`` layout), where :math:`W` is shared by all members, :math:`r_i` scales the
input side and :math:`s_i` the output side. Multiplying by :math:`W_i` never materialises it:

.. math::  y = \big((x \circ r_i)\, W^\top\big) \circ s_i + b_i

Both layers read the member-major layout of :mod:`ensemblekit.members`: an input of ``n*B`` rows
whose rows ``i*B:(i+1)*B`` belong to member ``i``. Tile an ordinary batch with
:func:`ensemblekit.repeat_members` to show every example to every member.

Fast-weight initialisation (``init``):

* ``"normal"`` (default): :math:`r, s \sim \mathcal{N}(1, 0.5^2)`, the CIFAR default of the
  uncertainty-baselines reference implementation;
* ``"random_sign"``: independent :math:`\pm 1` entries, as in the paper;
* ``"ones"``: all ones, and one bias shared by every member at the start, so every member
  starts as the same layer: the members are identical at initialisation and differ only by
  what training makes of them (the control of the member-similarity study; also useful when
  converting a trained model).

The reference applies no weight decay to ``r`` and ``s`` and trains them at half the learning
rate; :func:`batchensemble_parameter_groups` builds the optimizer groups that do this.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_choice, check_float, check_int

#: Fast-weight initialisations accepted by the ``init`` argument.
FAST_WEIGHT_INITS = ("normal", "random_sign", "ones")

#: Mean and standard deviation of the ``"normal"`` fast-weight initialisation.
NORMAL_INIT_MEAN, NORMAL_INIT_STD = 1.0, 0.5


class _BatchEnsembleLayer(nn.Module):
    """What both layers share: the fast weights ``r`` (n, in) and ``s`` (n, out), bias (n, out)."""

    def __init__(self, n: int, init: str) -> None:
        super().__init__()
        self.n = check_int("n", n, minimum=1)
        self.init = check_choice("init", init, FAST_WEIGHT_INITS)

    def _register_member_parameters(
        self, in_size: int, out_size: int, bias: bool, factory_kwargs: dict
    ) -> None:
        self.r = nn.Parameter(torch.empty(self.n, in_size, **factory_kwargs))
        self.s = nn.Parameter(torch.empty(self.n, out_size, **factory_kwargs))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.n, out_size, **factory_kwargs))
        else:
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        # The shared weight and the biases start as torch.nn.Linear / Conv2d would; the fast
        # weights follow ``init``. Member biases are drawn independently, except under "ones",
        # where one bias is drawn and copied to every member: otherwise the members would
        # differ from the start through their biases alone.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            with torch.no_grad():
                if self.init == "ones":
                    self.bias.copy_(torch.empty_like(self.bias[:1]).uniform_(-bound, bound))
                else:
                    nn.init.uniform_(self.bias, -bound, bound)
        self.reset_fast_weights()

    def reset_fast_weights(self) -> None:
        """Draw ``r`` and ``s`` again from the layer's ``init``."""
        with torch.no_grad():
            for fast in (self.r, self.s):
                if self.init == "normal":
                    fast.normal_(NORMAL_INIT_MEAN, NORMAL_INIT_STD)
                elif self.init == "random_sign":
                    fast.bernoulli_(0.5).mul_(2.0).sub_(1.0)
                else:
                    fast.fill_(1.0)

    def fast_weights(self) -> tuple[nn.Parameter, nn.Parameter]:
        """The per-member fast weights ``(r, s)``."""
        return self.r, self.s

    def _members(self, x: torch.Tensor, features_dim: int, size: int) -> torch.Tensor:
        """Check ``x`` and view it as ``(n, B, ...)``."""
        name = type(self).__name__
        if x.ndim < 2:
            raise ValueError(
                f"{name} expects a batched input of shape (n*B, ...), got shape {tuple(x.shape)}"
            )
        if x.shape[features_dim] != size:
            side = "in_features" if features_dim == -1 else "in_channels"
            raise ValueError(
                f"{name} was built for {side}={size} but got an input with "
                f"{x.shape[features_dim]} on dim {features_dim} (shape {tuple(x.shape)})"
            )
        if x.shape[0] % self.n != 0:
            raise ValueError(
                f"{name} with n={self.n} needs a member-major batch whose size is a multiple of "
                f"n, got {x.shape[0]} rows; tile a batch with ensemblekit.repeat_members(x, "
                f"{self.n}) so member i owns rows i*B:(i+1)*B"
            )
        return x.reshape(self.n, x.shape[0] // self.n, *x.shape[1:])

    def effective_weight(self) -> torch.Tensor:
        """Every member's weight ``W * s_i r_i^T``: shape ``(n, *weight.shape)``."""
        trailing = [1] * (self.weight.ndim - 2)
        s = self.s.view(self.n, -1, 1, *trailing)
        r = self.r.view(self.n, 1, -1, *trailing)
        return self.weight.unsqueeze(0) * s * r


class BatchEnsembleLinear(_BatchEnsembleLayer):
    r"""Linear layer with a shared weight and rank-1 fast weights per member.

    Member :math:`i` computes :math:`y = ((x \circ r_i) W^\top) \circ s_i + b_i`, i.e. a linear
    layer with weight :math:`W \circ (s_i r_i^\top)`.

    Args:
        in_features, out_features: as in :class:`torch.nn.Linear`.
        n: number of members.
        bias: learn one bias per member.
        init: fast-weight initialisation, one of ``"normal"`` (N(1, 0.5^2), default),
            ``"random_sign"`` (+-1), ``"ones"``.

    Shape:
        input ``(n*B, *, in_features)`` member-major -> output ``(n*B, *, out_features)``.

    Attributes:
        weight: shared ``(out_features, in_features)``, no bias.
        r: ``(n, in_features)`` input-side fast weights.
        s: ``(n, out_features)`` output-side fast weights.
        bias: ``(n, out_features)`` per-member bias, or ``None``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n: int,
        bias: bool = True,
        init: str = "normal",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(n, init)
        factory_kwargs = {"device": device, "dtype": dtype}
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory_kwargs))
        self._register_member_parameters(in_features, out_features, bias, factory_kwargs)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self._members(x, -1, self.in_features)  # (n, B, *, in)
        extra = [1] * (members.ndim - 2)  # broadcast each member's vectors over B and *
        r = self.r.view(self.n, *extra, self.in_features)
        s = self.s.view(self.n, *extra, self.out_features)
        y = F.linear(members * r, self.weight) * s
        if self.bias is not None:
            y = y + self.bias.view(self.n, *extra, self.out_features)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, "
            f"bias={self.bias is not None}, init={self.init!r}"
        )


class _BatchEnsembleConvNd(_BatchEnsembleLayer):
    r"""N-D convolution with a shared kernel and rank-1 fast weights per member (N = ``dims``).

    Member :math:`i` computes :math:`y = \mathrm{conv}(x \circ r_i,\ W) \circ s_i + b_i`, with
    :math:`r_i` broadcast over the input channels' spatial positions and :math:`s_i, b_i` over
    the output's. Equivalently, its kernel is ``W[o, c] * s_i[o] * r_i[c]``.
    :class:`BatchEnsembleConv1d`, :class:`BatchEnsembleConv2d` and :class:`BatchEnsembleConv3d`
    differ only in ``dims``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups: as in
            :class:`torch.nn.Conv2d` and its 1-D / 3-D cousins (zero padding only).
        n: number of members.
        bias: learn one bias per member (convolutions followed by BatchNorm usually pass False).
        init: fast-weight initialisation, one of ``"normal"`` (default), ``"random_sign"``,
            ``"ones"``.

    Shape:
        input ``(n*B, in_channels, *spatial)`` member-major (``dims`` spatial dims) ->
        output ``(n*B, out_channels, *spatial')``.

    Attributes:
        weight: shared kernel ``(out_channels, in_channels/groups, *kernel_size)``, no bias.
        r: ``(n, in_channels)``; s: ``(n, out_channels)``; bias: ``(n, out_channels)`` or None.
    """

    #: number of spatial dims (set by each subclass)
    dims: int = 0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        n: int,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        init: str = "normal",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(n, init)
        factory_kwargs = {"device": device, "dtype": dtype}
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.groups = check_int("groups", groups, minimum=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels={in_channels} and out_channels={out_channels} must both be "
                f"divisible by groups={groups}"
            )
        tuple_of = nn.modules.utils._ntuple(self.dims)
        self.kernel_size = tuple_of(kernel_size)
        self.stride = tuple_of(stride)
        self.padding = padding if isinstance(padding, str) else tuple_of(padding)
        self.dilation = tuple_of(dilation)
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory_kwargs)
        )
        self._register_member_parameters(in_channels, out_channels, bias, factory_kwargs)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.dims + 2:
            spatial = ("L",), ("H", "W"), ("D", "H", "W")
            raise ValueError(
                f"{type(self).__name__} expects a {self.dims + 2}D input "
                f"(n*B, C, {', '.join(spatial[self.dims - 1])}), got shape {tuple(x.shape)}"
            )
        members = self._members(x, 1, self.in_channels)  # (n, B, C, *spatial)
        ones = [1] * self.dims
        r = self.r.view(self.n, 1, self.in_channels, *ones)
        scaled = (members * r).reshape(x.shape)
        convolve = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        y = convolve(
            scaled, self.weight, None, self.stride, self.padding, self.dilation, self.groups
        )
        y = y.view(self.n, -1, *y.shape[1:]) * self.s.view(self.n, 1, self.out_channels, *ones)
        if self.bias is not None:
            y = y + self.bias.view(self.n, 1, self.out_channels, *ones)
        return y.reshape(-1, *y.shape[2:])

    def effective_weight(self) -> torch.Tensor:
        if self.groups != 1:
            # r scales input channels; with groups the kernel holds in_channels/groups of them.
            raise NotImplementedError(
                f"effective_weight of a grouped {type(self).__name__} is not defined here "
                f"(groups={self.groups}); use groups=1"
            )
        return super().effective_weight()

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, n={self.n}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, init={self.init!r}"
        )


class BatchEnsembleConv1d(_BatchEnsembleConvNd):
    """BatchEnsemble :class:`torch.nn.Conv1d`: input ``(n*B, C, L)`` (see the base class)."""

    dims = 1


class BatchEnsembleConv2d(_BatchEnsembleConvNd):
    """BatchEnsemble :class:`torch.nn.Conv2d`: input ``(n*B, C, H, W)`` (see the base class)."""

    dims = 2


class BatchEnsembleConv3d(_BatchEnsembleConvNd):
    """BatchEnsemble :class:`torch.nn.Conv3d`: input ``(n*B, C, D, H, W)`` (see the base
    class)."""

    dims = 3


BATCHENSEMBLE_LAYERS = (BatchEnsembleLinear, _BatchEnsembleConvNd)


def batchensemble_parameter_groups(
    module: nn.Module,
    weight_decay: float,
    lr: float,
    fast_weight_lr_multiplier: float = 0.5,
    fast_weight_decay: float = 0.0,
) -> list[dict]:
    """Optimizer parameter groups that treat BatchEnsemble fast weights as the reference does.

    Every parameter except the fast weights ``r``/``s`` of the BatchEnsemble layers in
    ``module`` (shared kernels, member biases, BatchNorm, everything else) gets
    ``weight_decay``; the fast weights get ``fast_weight_decay`` (0 in the reference
    implementation: decay would pull them towards 0, i.e. switch members off; some code, e.g.
    the 2026 BatchEnsemble study's, decays them like everything else) and the learning rate
    ``lr * fast_weight_lr_multiplier`` (0.5 in the reference implementation).

    Returns:
        ``[{'params', 'weight_decay', 'lr'}, ...]`` for ``torch.optim``; a group with no
        parameters is left out.
    """
    weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
    lr = check_float("lr", lr, minimum=0.0, min_inclusive=False)
    multiplier = check_float(
        "fast_weight_lr_multiplier", fast_weight_lr_multiplier, minimum=0.0, min_inclusive=False
    )
    fast_weight_decay = check_float("fast_weight_decay", fast_weight_decay, minimum=0.0)
    fast_ids = {
        id(p)
        for layer in module.modules()
        if isinstance(layer, _BatchEnsembleLayer)
        for p in layer.fast_weights()
    }
    slow = [p for p in module.parameters() if id(p) not in fast_ids]
    fast = [p for p in module.parameters() if id(p) in fast_ids]
    groups = [
        {"params": slow, "weight_decay": weight_decay, "lr": lr},
        {"params": fast, "weight_decay": fast_weight_decay, "lr": lr * multiplier},
    ]
    return [group for group in groups if group["params"]]

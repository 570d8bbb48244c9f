"""Masksembles layers: a fixed binary channel mask per member, applied to member-major groups.

A batch of B rows is split into ``n`` contiguous groups of B/n rows (the member-major layout of
:mod:`ensemblekit.members`) and group i is multiplied by mask i along dim 1. This is the same
computation in training and in evaluation, as published: at training time a batch of ordinary
samples is split among the members (training costs one model's forward), at inference the input
is tiled with :func:`ensemblekit.repeat_members` so every member sees every sample. Kept
activations are not rescaled.

With ``activation="relu"`` the layer applies the ReLU itself, ``mask * relu(x)``, as one autograd
node (:func:`~ensemblekit.layers.masked_relu.masked_relu`): the same values and gradients as a
``ReLU`` followed by the plain layer, one memory pass less per backward. The backbones of
:func:`ensemblekit.build_model` use it at every drop site.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_float, check_int, check_tensor
from ..masks import generate_masks
from .masked_relu import masked_relu

#: values of the ``activation`` argument: None (mask only) or an activation applied before it
ACTIVATIONS = (None, "relu")


class Masksembles(nn.Module):
    """Masksembles on dim 1 of an input of shape (B, C, *), for any number of trailing dims,
    or on another dim (``dim=-1``: feature-last inputs such as a transformer's (B, T, F)).

    Args:
        channels: C, the size of dim 1.
        n: number of masks (members). B must be a multiple of n.
        scale: mask overlap control, >= 1 (1: identical full masks; larger: less overlap).
        seed: makes the masks deterministic (see :func:`ensemblekit.generate_masks`).
        activation: ``None`` (default): multiply by the masks; ``"relu"``: ``mask * relu(x)``
            in one autograd node, for a layer that replaces a ``ReLU -> mask`` pair.
        dim: the dim that holds the C channels (default 1; any dim but the batch dim 0,
            negative counting from the end). The batch dim 0 is member-major whatever ``dim``.

    Shape:
        input (B, C, *) -> output (B, C, *) (C on ``dim``), same dtype and device.

    The masks live in the persistent bool buffer ``masks`` of shape (n, C), so ``state_dict()``
    holds them and ``load_state_dict`` restores the exact submodels whatever seed this layer
    was built with.
    """

    #: accepted input ranks; ``None`` means any rank >= 2
    _ranks: tuple[int, ...] | None = None

    def __init__(
        self,
        channels: int,
        n: int,
        scale: float,
        *,
        seed: int | None = None,
        activation: str | None = None,
        dim: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be None (masks only) or 'relu' (ReLU applied before the "
                f"masks, fused with them), got {activation!r}"
            )
        self.channels = check_int("channels", channels, minimum=1)
        self.n = check_int("n", n, minimum=1)
        self.scale = check_float("scale", scale, minimum=1.0)
        self.seed = seed
        self.activation = activation
        self.dim = check_int("dim", dim)
        if self.dim == 0:
            raise ValueError(
                "dim must not be 0: dim 0 is the member-major batch; pass the dim that holds the "
                "channels (1 for (B, C, *), -1 for feature-last (B, T, F))"
            )
        self.register_buffer("masks", generate_masks(self.channels, self.n, self.scale, seed=seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        batch = x.shape[0]
        # (n, B/n, *, C, *) * (n, 1, 1.., C, 1..): one broadcast multiply, in the input's dtype.
        grouped = x.reshape(self.n, batch // self.n, *x.shape[1:])
        shape = [self.n] + [1] * x.ndim
        shape[self.dim % x.ndim + 1] = self.channels
        mask = self.masks.to(dtype=x.dtype).view(shape)
        if self.activation == "relu":
            return masked_relu(grouped, mask).reshape(x.shape)
        return (grouped * mask).reshape(x.shape)

    def _check_input(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        check_tensor(f"{name} input", x)
        if self._ranks is not None and x.ndim not in self._ranks:
            wanted = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(
                f"{name} expects a {wanted} input, got shape {tuple(x.shape)} ({x.ndim}D)"
            )
        if x.ndim < 2 or not (-x.ndim <= self.dim < x.ndim) or self.dim % x.ndim == 0:
            raise ValueError(
                f"{name} with dim={self.dim} expects an input of shape (B, *) with channels on "
                f"dim {self.dim} (not the batch dim 0), got shape {tuple(x.shape)}"
            )
        if x.shape[self.dim] != self.channels:
            raise ValueError(
                f"{name} was built for channels={self.channels} but got an input with "
                f"{x.shape[self.dim]} channels on dim {self.dim} (shape {tuple(x.shape)})"
            )
        if x.shape[0] % self.n != 0:
            raise ValueError(
                f"{name} with n={self.n} needs a batch size that is a multiple of n, got "
                f"B={x.shape[0]}. At inference tile the input with "
                f"ensemblekit.repeat_members(x, {self.n}); when training use a batch size that "
                f"is a multiple of {self.n} (and drop_last=True in the DataLoader)"
            )

    def extra_repr(self) -> str:
        text = f"channels={self.channels}, n={self.n}, scale={self.scale}"
        if self.dim != 1:
            text += f", dim={self.dim}"
        return text if self.activation is None else f"{text}, activation={self.activation!r}"


class Masksembles1d(Masksembles):
    """Masksembles for (B, C) or (B, C, L) inputs, like :class:`torch.nn.Dropout1d`."""

    _ranks = (2, 3)


class Masksembles2d(Masksembles):
    """Masksembles for (B, C, H, W) inputs, like :class:`torch.nn.Dropout2d`."""

    _ranks = (4,)


class Masksembles3d(Masksembles):
    """Masksembles for (B, C, D, H, W) inputs, like :class:`torch.nn.Dropout3d`."""

    _ranks = (5,)

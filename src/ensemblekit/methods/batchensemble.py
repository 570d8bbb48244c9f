"""BatchEnsemble (Wen, Tran & Ba, ICLR 2020): every conv and linear layer shared by M members
through rank-1 fast weights; BatchNorm shared.

Training follows the reference code: ``model(x)`` tiles the batch M times inside the forward
(M*B rows, member-major) and ``training_targets(y)`` tiles the targets to match, so every member
sees every example. ``tile_batch=False`` follows the paper text instead: the batch is split into
M contiguous groups, one per member (the batch size must then be a multiple of M:
``model.batch_multiple``). Optimizer groups from ``model.parameter_groups`` give the fast
weights no weight decay and ``fast_weight_lr_multiplier`` (0.5) times the learning rate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_choice, check_int
from ..layers.batchensemble import (
    BATCHENSEMBLE_LAYERS,
    FAST_WEIGHT_INITS,
    BatchEnsembleConv2d,
    BatchEnsembleLinear,
)
from ..members import repeat_members
from ..models.factory import LayerFactory
from .base import TiledInferenceModel, check_flag
from .registry import register_method


class BatchEnsembleLayers(LayerFactory):
    """BatchEnsemble convolutions and linear layers; BatchNorm and drop sites as in single."""

    def __init__(self, n: int, init: str) -> None:
        self.n, self.init = n, init

    def conv(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, bias=False,
             stem=False):
        return BatchEnsembleConv2d(
            in_channels,
            out_channels,
            kernel_size,
            self.n,
            stride=stride,
            padding=padding,
            bias=bias,
            init=self.init,
        )

    def linear(self, in_features, out_features, *, bias=True, stem=False, head=False):
        return BatchEnsembleLinear(in_features, out_features, self.n, bias=bias, init=self.init)


class BatchEnsembleModel(TiledInferenceModel):
    """A backbone whose conv / linear layers are BatchEnsemble layers with ``n`` members."""

    method = "batchensemble"

    def __init__(self, backbone: nn.Module, n: int, *, tile_batch: bool = True) -> None:
        super().__init__(n, batch_multiple=1 if tile_batch else n)
        self.backbone = backbone
        self.tile_batch = bool(tile_batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, ...) -> (n*B, K)`` when tiling, else ``(B, ...) -> (B, K)`` (B multiple of n)."""
        if self.tile_batch:
            return self.backbone(repeat_members(x, self.num_members))
        self._check_batch(x, self.num_members, "with tile_batch=False each member gets B/n rows")
        return self.backbone(x)

    def training_targets(self, y: torch.Tensor) -> torch.Tensor:
        return repeat_members(y, self.num_members) if self.tile_batch else y

    @torch.no_grad()
    def member_weights(self) -> torch.Tensor:
        """``(n, P)``: each BatchEnsemble layer as its member's effective weight
        ``W * s_m r_m^T`` followed by the member's bias; every other parameter shared.
        P is the single model's parameter count."""
        n = self.num_members
        pieces = []
        for module in self.backbone.modules():
            if isinstance(module, BATCHENSEMBLE_LAYERS):
                pieces.append(module.effective_weight().reshape(n, -1))
                if module.bias is not None:
                    pieces.append(module.bias.reshape(n, -1))
                continue
            for parameter in module.parameters(recurse=False):
                pieces.append(parameter.reshape(1, -1).expand(n, -1))
        return torch.cat(pieces, dim=1)


    def member_weight_columns(self, module: nn.Module) -> int:
        """A BatchEnsemble layer: its effective weight and its member's bias; others whole."""
        if isinstance(module, BATCHENSEMBLE_LAYERS):
            return module.weight.numel() + (0 if module.bias is None else module.bias.shape[1])
        return super().member_weight_columns(module)


_CONSTRUCTION = {
    "ones": "members identical at initialisation by construction (r = s = 1, shared bias)",
    "random_sign": "fast weights +-1 by construction (cosine ~ 0 at initialisation)",
    "normal": "fast weights N(1, 0.5^2) by construction: expected cosine (E r E s)^2 / "
              "(E r^2 E s^2) = 0.64 at initialisation whatever W is",
}


@register_method(
    "batchensemble", label="BatchEnsemble", color="#2ca02c", marker="^",
    global_keys={"members": "n"},
    construction=lambda options: _CONSTRUCTION[options.get("init", "normal")],
    tune_grid={"init": ["normal", "random_sign"]},
    # fast-weight inits trained beside the method's own in the diversity study
    controls={"ones": {"init": "ones"}, "random_sign": {"init": "random_sign"}},
)
def batchensemble(
    make_backbone: Callable,
    *,
    seed: int,
    n: int = 4,
    init: str = "normal",
    tile_batch: bool = True,
) -> BatchEnsembleModel:
    """``n`` members; fast weights initialised by ``init`` ("normal": N(1, 0.5^2); "random_sign":
    +-1; "ones": r = s = 1 and one bias shared by all members, so the members start identical);
    ``tile_batch``: tile (reference code) or split the batch.

    With ``init="ones"`` and ``tile_batch=True`` every member sees the same rows and so gets the
    same gradient: the members stay identical through training (a control, not a method)."""
    n = check_int("n", n, minimum=1)
    init = check_choice("init", init, FAST_WEIGHT_INITS)
    tile_batch = check_flag("tile_batch", tile_batch)
    backbone = make_backbone(BatchEnsembleLayers(n, init), seed)
    return BatchEnsembleModel(backbone, n, tile_batch=tile_batch)

"""Masksembles (Durasov et al., CVPR 2021): one network, N fixed channel masks = N thin members.

Placement (every backbone follows it through :class:`MasksemblesLayers`; see
:mod:`ensemblekit.methods.placement`):

* ``placement="dropout"`` (the default; the authors' advice: masks *instead of* dropout, and
  the better placement in 14 of 16 paired settings of the digits tune grid): only where the
  classic architecture puts Dropout (each backbone's docstring says where);
  ``placement="all"``: a Masksembles layer at every drop site: after every
  ``conv -> BN -> ReLU`` and every hidden ``Linear -> ReLU``, on the output channels, and on the
  residual stream of ResNets. Never on the raw input, never on the logits;
* ``widen=True`` widens every masked layer by 1/keep, so each member keeps the single model's
  channel count there (more parameters; the same member width as the single model);
* every Masksembles layer of width C in one model has the same masks (all are generated with the
  model's seed), so member m keeps the channel set K_m(C) at every layer of width C and is a
  well-defined thin sub-network;
* **skip rule**: a drop site where a mask would keep fewer than :data:`MIN_MEMBER_CHANNELS` = 8
  channels gets no masks (every member keeps all its channels there). The authors' generator
  refuses C < 10 channels; the rule here asks the same of what matters, the channels each member
  keeps (at n=4, scale 2 it masks C >= 15; at scale 4, C >= 22), so a higher scale never leaves
  members with a handful of channels. Measured on the digits validation split (3 seeds,
  ``docs/experiments/skip_rule.py``) where the rules differ: LeNet x3 at scale 4, NLL 0.101 vs
  0.209 for C >= 10 (which masks conv1's 18 channels down to 7 per member); MLP 64-32-16 at
  scale 3, 0.509 vs 0.675; identical where they agree. ``scale`` near 1 simply gives (near)
  full masks.

Every drop site applies the backbone's ReLU itself: a Masksembles layer built with
``activation="relu"`` (ReLU and mask in one autograd node, which keeps a training step close to
the single model's), and a plain ``ReLU`` where the skip rule applies.

Training splits a batch into n contiguous groups, one mask each (training costs one model's
forward; the batch size must be a multiple of n: ``model.batch_multiple``). Inference tiles the
input n times. :meth:`MasksemblesModel.channel_masks` lists every conv / linear / BatchNorm layer
with the input and output channel masks of each member -- the map from which a member's thin
sub-network can be cut out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_float, check_int
from ..layers import Masksembles, Masksembles1d, Masksembles2d
from ..masks import keep_fraction, mask_size
from .base import TiledInferenceModel, no_drop_site_message
from .member_masks import LayerMasks, layer_masks, masked_member_weights
from .placement import DropSites, shared_prefix_note
from .registry import register_method

#: the skip rule: a drop site gets masks only if each mask keeps at least this many channels
MIN_MEMBER_CHANNELS = 8


def masks_fit(channels: int, n: int, scale: float) -> bool:
    """The skip rule: each of the ``n`` masks of ``scale`` on ``channels`` channels keeps at
    least :data:`MIN_MEMBER_CHANNELS` of them."""
    return mask_size(channels, n, scale) >= MIN_MEMBER_CHANNELS


def widened_channels(channels: int, n: int, scale: float) -> int:
    """The fewest channels C' >= ``channels`` whose masks keep at least ``channels`` each."""
    wide = channels
    while mask_size(wide, n, scale) < channels:
        # mask_size grows by about keep per channel: jump most of the way, then step.
        wide = max(wide + 1, int(wide * channels / max(mask_size(wide, n, scale), 1)))
        while wide > channels and mask_size(wide - 1, n, scale) >= channels:
            wide -= 1
    return wide


class MasksemblesLayers(DropSites):
    """Plain layers; at every drop site the placement selects and the skip rule allows, ReLU
    fused with Masksembles (same seed everywhere), elsewhere a plain ReLU."""

    def __init__(self, n: int, scale: float, seed: int, *, placement: str = "dropout",
                 widen: bool = False) -> None:
        super().__init__(placement, widen)
        self.n, self.scale, self.seed = n, scale, seed

    def fits(self, channels: int) -> bool:
        return masks_fit(channels, self.n, self.scale)

    def widened(self, channels: int) -> int:
        return widened_channels(channels, self.n, self.scale)

    def operation(self, channels: int, *, spatial: bool) -> nn.Module:
        layer = Masksembles2d if spatial else Masksembles1d
        return layer(channels, self.n, self.scale, seed=self.seed, activation="relu")


class MasksemblesModel(TiledInferenceModel):
    """A backbone with Masksembles layers: n members that share all weights.

    ``model(x)`` splits the batch into n contiguous groups, group i through mask i (B must be a
    multiple of n); ``training_targets`` is the identity.
    """

    method = "masksembles"

    def __init__(self, backbone: nn.Module, n: int) -> None:
        super().__init__(n, batch_multiple=n)
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_batch(
            x,
            self.num_members,
            "each contiguous group of B/n rows goes through one mask (use drop_last=True)",
        )
        return self.backbone(x)

    def width_masks(self) -> dict[int, torch.Tensor]:
        """The masks ``(n, C)`` of every channel width C that has Masksembles layers."""
        found: dict[int, torch.Tensor] = {}
        for name, module in self.backbone.named_modules():
            if not isinstance(module, Masksembles):
                continue
            known = found.setdefault(module.channels, module.masks)
            if not torch.equal(known, module.masks):
                raise ValueError(
                    f"Masksembles layer {name!r} has masks that differ from another layer of "
                    f"width {module.channels}; members are then not thin sub-networks"
                )
        return found

    def channel_masks(self) -> list[LayerMasks]:
        """Every conv / linear / BatchNorm layer of the backbone (``named_modules`` order) with
        the input and output channels each member keeps: a list of :class:`LayerMasks`.

        Member m's sub-network is ``W[out_masks[m]][:, in_masks[m]]`` at every layer: the stem
        reads all input channels, the head writes all logits, and a width with no Masksembles
        layer (the skip rule) keeps all its channels.
        """
        return layer_masks(self.backbone, self.width_masks(), self.num_members)

    def member_weights(self) -> torch.Tensor:
        """Shared weights restricted by each member's masks, zeros elsewhere: ``(n, P)``."""
        return masked_member_weights(self.backbone, self.channel_masks(), self.num_members)


def _construction(options) -> str:
    return (f"masks fixed by construction (overlap set by scale = {options['scale']:g}, "
            f"placement {options.get('placement', 'all')}{shared_prefix_note(options)})")


@register_method(
    "masksembles", label="Masksembles", color="#d62728", marker="D",
    global_keys={"members": "n", "scale": "scale"},
    drop_fraction=lambda options: 1.0 - keep_fraction(options["n"], options["scale"]),
    construction=_construction,
    # epochs_factor: each member trains on 1/n of every batch and under-fits at the recipe's
    # epochs (digits, LeNet x3, one seed: validation NLL 0.103 -> 0.041 at scale 2 with masks
    # everywhere, 0.028 -> 0.016 with placement "dropout", from 30 to 60 epochs)
    tune_grid={"scale": [1.5, 2.0, 3.0, 4.0], "placement": ["all", "dropout"],
               "widen": [False, True], "epochs_factor": [1.0, 2.0]},
    compiled_inference=True,
    spectrum_knob="scale",
    panel_title=lambda options: f"Masksembles (scale {options['scale']:g})",
)
def masksembles(
    make_backbone: Callable, *, seed: int, n: int = 4, scale: float = 2.0,
    placement: str = "dropout", widen: bool = False,
) -> MasksemblesModel:
    """n members from masks of overlap ``scale`` (1: identical full masks = single model),
    at the drop sites ``placement`` selects, the masked layers widened by 1/keep if ``widen``.

    ``placement`` defaults to "dropout" (masks only where the classic architecture puts
    Dropout), as the authors advise ("instead of dropout") and as measured: in the digits tune
    grid (`ensemblekit tune --dataset digits`, 2 seeds, configs/tuned/digits-tune.md) masks at
    the dropout sites beat masks at every drop site in 14 of 16 paired settings (validation NLL
    0.007-0.056 against 0.022-0.110). "all" masks every drop site."""
    n = check_int("n", n, minimum=1)
    scale = check_float("scale", scale, minimum=1.0)
    layers = MasksemblesLayers(n, scale, seed, placement=placement, widen=widen)
    backbone = make_backbone(layers, seed)
    if n > 1 and scale > 1 and not any(
            isinstance(module, Masksembles) for module in backbone.modules()):
        raise ValueError(no_drop_site_message(
            "masksembles", backbone, n,
            rule=f"placement={placement!r}, where each of {n} masks at scale {scale:g} keeps "
                 f"at least {MIN_MEMBER_CHANNELS} channels"))
    return MasksemblesModel(backbone, n)

"""MC-Dropout (Gal & Ghahramani 2016): dropout stays on at test time; M stochastic passes.

Dropout goes at the same drop sites as Masksembles (by default ``placement="dropout"``: only
where the classic architecture puts Dropout; ``placement="all"``: after every
``conv -> BN -> ReLU`` and hidden ``Linear -> ReLU``; the drop site applying the ReLU then the
dropout;
channel-wise ``Dropout2d`` on feature maps, ``Dropout`` on vectors), with rate ``p`` (default
0.1, as in the 2026 BatchEnsemble study) and no skip rule; ``widen=True`` widens the layers it
drops by 1/(1-p), so a sample keeps the single model's channel count on average. Training is
plain; ``predict_members`` tiles the batch M times and runs one pass with BatchNorm in eval mode,
each dropout layer multiplying copy m by member m's mask, drawn from the model's own generator
seeded with ``seed`` (:mod:`ensemblekit.methods.seeded_dropout`): predictions are the same call
after call and the global RNG is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_float, check_int, check_seed
from ..members import repeat_members, split_members
from .base import EnsembleModel, no_drop_site_message
from .member_masks import layer_masks, masked_member_weights
from .placement import DropSites, shared_prefix_note
from .registry import register_method
from .seeded_dropout import MaskSource, member_dropout, seeded_mask_source


def dropout_modules(module: nn.Module) -> list[nn.Module]:
    """Every dropout layer (``torch.nn`` Dropout family) inside ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


class MCDropoutLayers(DropSites):
    """Plain layers; ReLU then dropout with rate ``p`` at every drop site the placement selects."""

    def __init__(self, p: float, *, placement: str = "dropout", widen: bool = False) -> None:
        super().__init__(placement, widen)
        self.p = p

    def widened(self, channels: int) -> int:
        return math.ceil(channels / (1.0 - self.p))

    def operation(self, channels: int, *, spatial: bool) -> nn.Module:
        return nn.Sequential(nn.ReLU(), nn.Dropout2d(self.p) if spatial else nn.Dropout(self.p))


class MCDropoutModel(EnsembleModel):
    """A backbone with dropout layers; M = ``num_samples`` stochastic passes at inference.

    ``model(x)`` is the plain forward (dropout active in train mode as usual, from the global
    RNG). At inference member m is one fixed sub-network: its dropout masks come from a
    generator seeded with ``seed`` afresh on every call and are shared by every example.
    """

    method = "mc_dropout"

    def __init__(self, backbone: nn.Module, num_samples: int, p: float | None = None,
                 dropout_widths: list[int] | None = None, *, seed: int = 0) -> None:
        super().__init__(num_samples)
        self.backbone = backbone
        self.p = p
        #: seeds the generator the inference-time dropout masks are drawn from
        self.sampling_seed = check_seed(seed)
        #: channel widths of the drop sites that have dropout (None: a converted model)
        self.dropout_widths = dropout_widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_members(
        self, x: torch.Tensor, num_samples: int | None, *, masks: MaskSource | None = None
    ) -> torch.Tensor:
        """``(M, B, K)``: the tiled batch through the backbone, member m's dropout masks
        drawn from the seeded generator (``masks``: another source, e.g. frozen masks)."""
        samples = self.num_members if num_samples is None else num_samples
        if masks is None:
            masks = seeded_mask_source(samples, self.sampling_seed, x.device)
        with member_dropout(self.backbone, samples, masks):
            return split_members(self.backbone(repeat_members(x, samples)), samples)

    def member_weights(self, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(M, P)``: per member, one dropout mask sampled per channel width (keep
        probability 1 - p), applied to the weights as Masksembles masks are (a layer's weight
        kept where its input and output channels are kept, zeros elsewhere; no rescaling)."""
        if self.p is None or self.dropout_widths is None \
                or not hasattr(self.backbone, "layer_widths"):
            raise NotImplementedError(
                "member_weights needs a model built by ensemblekit.build_model (a converted "
                "model has no map of which layers read which dropout layer)"
            )
        widths = set(self.dropout_widths)  # widths with no dropout keep every channel
        sampled = {
            width: torch.rand(self.num_members, width, generator=generator) >= self.p
            for width in sorted(widths)
        }
        masks = layer_masks(self.backbone, sampled, self.num_members)
        return masked_member_weights(self.backbone, masks, self.num_members)


def _construction(options) -> str:
    keep = 1.0 - options["p"]
    return (f"masks sampled by construction (rate p = {options['p']:g}; cosine ~ (1-p)^2 = "
            f"{keep ** 2:.2f} on the dropped layers whatever the weights"
            f"{shared_prefix_note(options)})")


@register_method(
    "mc_dropout", label="MC-Dropout", color="#1f77b4", marker="s", stochastic=True,
    global_keys={"members": "n", "dropout": "p"},
    drop_fraction=lambda options: float(options["p"]),
    construction=_construction,
    # epochs_factor: MC-Dropout drops a fraction p of every unit and fits last, like
    # Masksembles (the tune table's train accuracy column shows it)
    tune_grid={"p": [0.05, 0.1, 0.2, 0.3], "placement": ["all", "dropout"],
               "epochs_factor": [1.0, 2.0]},
    panel_title=lambda options: f"MC-Dropout (p={options['p']:g})",
)
def mc_dropout(
    make_backbone: Callable, *, seed: int, p: float = 0.1, n: int = 8,
    placement: str = "dropout", widen: bool = False,
) -> MCDropoutModel:
    """Dropout rate ``p``; ``n``: the default number of stochastic passes (members) M; at the
    drop sites ``placement`` selects, those layers widened by 1/(1-p) if ``widen``.

    ``placement`` defaults to "dropout" (dropout only where the classic architecture puts it,
    the placement the digits tune grid chose for MC-Dropout and Masksembles alike:
    configs/tuned/digits-tune.md); "all" puts dropout at every drop site."""
    p = check_float("p", p, minimum=0.0, maximum=1.0, max_inclusive=False)
    n = check_int("n", n, minimum=1)
    layers = MCDropoutLayers(p, placement=placement, widen=widen)
    backbone = make_backbone(layers, seed)
    if n > 1 and not dropout_modules(backbone):
        raise ValueError(no_drop_site_message("mc_dropout", backbone, n))
    return MCDropoutModel(backbone, n, p, sorted(set(layers.site_widths)), seed=seed)

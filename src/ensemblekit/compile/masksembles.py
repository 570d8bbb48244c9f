"""Masksembles' compiled path: member logits at about ``M * k^2`` of one model's work.

A Masksembles model at inference tiles its input M times and multiplies the channels each
member drops by zero, so M members cost M full models. Member m only needs the channels K_m(C)
its masks keep at every width C, about ``k^2`` of each convolution's work (k the keep
fraction: 0.56 at n=4, scale=2, so 4 members cost ~1.3 models instead of 4): each member
becomes a thin dense sub-network (:mod:`.stacking`), stacked into one network or looped,
with the layers before the first mask run once (:mod:`.shared_prefix`). A converted network
without a channel map fans out at its first mask instead (:mod:`.fan_out`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..methods.masksembles import MasksemblesModel
from .compiled import CompiledMembers, default_example, loops_on_this_device, reproduces
from .fan_out import fan_out_members
from .folding import conv_batchnorm_pairs, fold_batchnorm
from .registry import CompileOptions, register_compiler
from .shared_prefix import share_prefix_across, shared_input_layers, with_shared_prefix
from .stacking import member_channels, stack_members


def resolve_strategy(model: MasksemblesModel, example_input: torch.Tensor | None = None, *,
                     shared: set[str] | None = None) -> str:
    """What ``strategy="auto"`` picks: "stacked" when a shared prefix holds convolutions besides
    the stem (masks only late in the network), else "loop" for a deep convolutional backbone on
    the CPU, "stacked" otherwise.

    Measured (``benchmarks/inference.py``, one CPU thread, batch 64-256, n=4): looping over
    members is 1.3-1.4x faster for ResNet-18/20 masked everywhere (each member's activations
    are a quarter of the stacked ones and stay in cache; WRN-28-10 ties), while stacking is
    1.4-1.8x faster for LeNet and the MLP, whose small layers pay M times the per-call overhead
    in a loop. With ``placement="dropout"`` stacking with a shared prefix runs ResNet-20's
    first two stages once: 1.00x a single model, against 1.63x for the loop with the shared
    prefix and 3.06x without (benchmarks/RESULTS.md). On an accelerator stacking launches one
    kernel per layer instead of M.

    ``shared``: the layers whose input every member shares, if already found
    (:func:`~ensemblekit.compile.shared_prefix.shared_input_layers`); else one dry run on
    ``example_input`` finds them.
    """
    if not loops_on_this_device(model.backbone):
        return "stacked"
    if shared is None:  # the layers whose input every member shares (one dry run)
        example = default_example(model) if example_input is None else example_input
        shared = shared_input_layers(model, example[:2])
    modules = dict(model.backbone.named_modules())
    masks = {entry.name: entry for entry in member_channels(model)}
    shared_convs = [name for name in shared
                    if isinstance(modules[name], nn.Conv2d) and masks[name].out_masks.all()]
    return "stacked" if len(shared_convs) > 1 else "loop"


def _runs(network: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``network`` accepts ``example`` (shapes fit), without gradients."""
    try:
        with torch.no_grad():
            network(example)
    except RuntimeError:
        return False
    return True


@register_compiler(MasksemblesModel)
def compile_masksembles(model: MasksemblesModel, options: CompileOptions) -> nn.Module:
    """Thin members (a built backbone with ``layer_widths``), else fan-out (module docstring)."""
    example = options.example_input
    if not hasattr(model.backbone, "layer_widths"):  # your own network, converted
        return fan_out_members(model, example, lambda fast, x: reproduces(model, fast, x))
    masks = member_channels(model)
    strategy = options.strategy
    # one dry run finds the shared prefix, for the strategy and for the sharing alike
    shared = shared_input_layers(model, example) if options.share_prefix or \
        strategy == "auto" else set()
    if strategy == "auto":
        strategy = resolve_strategy(model, example, shared=shared)
    count = model.num_members
    groups = [list(range(count))] if strategy == "stacked" else [[m] for m in range(count)]
    stacked_masks, kept = masks, set()
    if options.share_prefix:
        stacked_masks, kept = with_shared_prefix(masks, shared, model.backbone.head_name)
    networks = [stack_members(model.backbone, stacked_masks, members, kept=kept)
                for members in groups]
    if kept and not _runs(networks[0], example):
        kept = set()  # a shared and a stacked activation meet: compile without sharing
        networks = [stack_members(model.backbone, masks, members) for members in groups]
    for network in networks:
        if options.fold_batchnorm_into_conv:
            fold_batchnorm(network, conv_batchnorm_pairs(network, example))
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        if options.channels_last:
            network.to(memory_format=torch.channels_last)
    store = share_prefix_across(networks, kept) if strategy == "loop" and kept else None
    return CompiledMembers(networks, count, strategy, options.channels_last, store)

"""Compiled members from dense member networks: the single model, Deep Ensembles, BatchEnsemble.

A method hands over one plain network per member, all of the same architecture (conv, linear
and BatchNorm layers, each member with its own weights). Two ways to run them:

* ``"loop"``: each network on its own, one after the other, every BatchNorm that reads only a
  convolution's output folded into it (:mod:`.folding`) and convolutions channels-last; any
  network works;
* ``"stacked"``: one network computing every member at once on ``(B, M*C, ...)``
  activations, member m's channels at ``[m*C : (m+1)*C]`` (:func:`stack_networks`), folded and
  channels-last the same way; needs the backbone's map of its layers
  (:meth:`~ensemblekit.models.Backbone.layer_widths`).

Stacking runs one grouped convolution per layer instead of M small ones; looping keeps each
member's activations a quarter of the stacked ones. Which is faster depends on the backbone and
the device: ``strategy="auto"`` takes the one measured faster (``benchmarks/inference.py
--sections methods``; numbers in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..submodules import replace_module
from .compiled import CompiledMembers, loops_on_this_device
from .folding import conv_batchnorm_pairs, fold_batchnorm
from .registry import CompileOptions
from .stacking import StackedLinear


def _stacked_conv(layers: list[nn.Conv2d], shared_input: bool) -> nn.Conv2d:
    first, count = layers[0], len(layers)
    new = nn.Conv2d(
        first.in_channels if shared_input else count * first.in_channels,
        count * first.out_channels, first.kernel_size, stride=first.stride,
        padding=first.padding, dilation=first.dilation, groups=1 if shared_input else count,
        bias=first.bias is not None, padding_mode=first.padding_mode,
        device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(torch.cat([layer.weight for layer in layers]))
        if first.bias is not None:
            new.bias.copy_(torch.cat([layer.bias for layer in layers]))
    return new


def _stacked_linear(layers: list[nn.Linear], shared_input: bool) -> nn.Module:
    first = layers[0]
    bias = None if first.bias is None else torch.stack([layer.bias.detach() for layer in layers])
    if not shared_input:
        return StackedLinear(torch.stack([layer.weight.detach() for layer in layers]), bias)
    # The stem reads shared features: one dense layer with M*out outputs.
    new = nn.Linear(first.in_features, len(layers) * first.out_features,
                    bias=bias is not None, device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(torch.cat([layer.weight for layer in layers]))
        if bias is not None:
            new.bias.copy_(bias.reshape(-1))
    return new


def _stacked_batchnorm(layers: list[nn.Module], name: str) -> nn.Module:
    first = layers[0]
    if first.running_mean is None:
        raise NotImplementedError(
            f"compile_members: BatchNorm {name!r} has no running statistics "
            "(track_running_stats=False); its members cannot be stacked")
    new = type(first)(len(layers) * first.num_features, eps=first.eps, momentum=first.momentum,
                      affine=first.affine)
    new = new.to(device=first.running_mean.device, dtype=first.running_mean.dtype)
    with torch.no_grad():
        new.running_mean.copy_(torch.cat([layer.running_mean for layer in layers]))
        new.running_var.copy_(torch.cat([layer.running_var for layer in layers]))
        if first.affine:
            new.weight.copy_(torch.cat([layer.weight for layer in layers]))
            new.bias.copy_(torch.cat([layer.bias for layer in layers]))
    return new


def _stacked_layer(layers: list[nn.Module], name: str, shared_input: bool) -> nn.Module:
    first = layers[0]
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return _stacked_batchnorm(layers, name)
    if type(first) is nn.Conv2d and first.groups == 1:
        return _stacked_conv(layers, shared_input)
    if type(first) is nn.Linear:
        return _stacked_linear(layers, shared_input)
    raise NotImplementedError(
        f"compile_members: layer {name!r} is {type(first).__name__}"
        + (f" (groups={first.groups})" if isinstance(first, nn.Conv2d) else "")
        + "; stacked members support nn.Conv2d (groups=1), nn.Linear and BatchNorm")


def stack_networks(networks: list[nn.Module]) -> nn.Module:
    """One network computing every member network at once: ``(B, ...) -> (B, M*K)``,
    member-major on dim 1 (module docstring). ``networks``: M backbones of one architecture
    with ``layer_widths`` (the layer reading the raw input is shared, every other one grouped
    or block-diagonal); a copy in eval mode, the originals untouched."""
    template = networks[0]
    if not hasattr(template, "layer_widths"):
        raise NotImplementedError(
            f"compile_members: stacking members needs a backbone whose layer_widths() maps its "
            f"layers (an ensemblekit.models.Backbone); {type(template).__name__} has none: use "
            "strategy='loop'")
    widths = template.layer_widths()
    listed = {width.name for width in widths}
    for name, module in template.named_modules():
        has_state = any(True for _ in module.parameters(recurse=False)) or any(
            buffer is not None for buffer in module.buffers(recurse=False))
        if has_state and name not in listed:
            raise NotImplementedError(
                f"compile_members: {name!r} ({type(module).__name__}) has parameters or buffers "
                "but is not a conv, linear or BatchNorm layer of the backbone's layer_widths(); "
                "its members cannot be stacked: use strategy='loop'")
    stacked = copy.deepcopy(template)
    for width in widths:
        layers = [network.get_submodule(width.name) for network in networks]
        replace_module(stacked, width.name,
                       _stacked_layer(layers, width.name, shared_input=width.in_width is None))
    return stacked.train(False)


def dense_strategy(requested: str, network: nn.Module) -> str:
    """``requested``, or for "auto" the faster one measured: "loop" for a deep convolutional
    backbone on the CPU or one without ``layer_widths`` (it cannot stack), else "stacked".

    Measured on one CPU thread, M=4, batch 256 (``benchmarks/RESULTS.md``): stacked Deep
    Ensemble and BatchEnsemble members take 1.8-2.0x the loop's time on ResNet-20, and the
    loop 1.3-1.5x the stack's on LeNet (M small layers called one by one).
    On an accelerator, untested here, the stack launches one kernel per layer instead of M."""
    if requested != "auto":
        return requested
    if not hasattr(network, "layer_widths") or loops_on_this_device(network):
        return "loop"
    return "stacked"


def compile_dense(networks: list[nn.Module], options: CompileOptions, strategy: str
                  ) -> CompiledMembers:
    """:class:`~.compiled.CompiledMembers` of the member ``networks`` (each ``(B, ...) -> (B,
    K)``; left untouched) run by ``strategy`` ("loop" or "stacked"), BatchNorm folded and
    channels-last as ``options`` ask."""
    if strategy == "stacked" and len(networks) > 1:
        ready = [stack_networks(networks)]
    else:
        ready = [copy.deepcopy(network).train(False) for network in networks]
    for network in ready:
        if options.fold_batchnorm_into_conv:
            fold_batchnorm(network, conv_batchnorm_pairs(network, options.example_input))
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        if options.channels_last:
            network.to(memory_format=torch.channels_last)
    return CompiledMembers(ready, len(networks), strategy, options.channels_last)

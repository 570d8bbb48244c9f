"""``compile_members``: Masksembles member logits at about ``M * k^2`` of one model's work.

A Masksembles model at inference tiles its input M times and multiplies the channels each
member drops by zero, so M members cost M full models. Member m only needs the channels K_m(C)
its masks keep at every width C, about ``k^2`` of each convolution's work (k the keep
fraction: 0.56 at n=4, scale=2, so 4 members cost ~1.3 models instead of 4).

Packed-Ensembles models compile too (:mod:`ensemblekit.compile.packed`): BatchNorm folded and
the members laid out the fastest exact way measured.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_finite, check_tensor
from ..methods.base import predict_members
from ..methods.masksembles import MasksemblesModel
from ..methods.mc_dropout import MCDropoutModel
from ..methods.packed_ensemble import PackedEnsembleModel
from .fan_out import fan_out_members
from .folding import conv_batchnorm_pairs, fold_batchnorm
from .packed import packed_networks, resolve_packed_strategy
from .shared_prefix import share_prefix_across, shared_input_layers, with_shared_prefix
from .stacking import member_channels, stack_members

#: "stacked": all members at once on (B, M*P, ...) activations (grouped convolutions, batched
#: matmuls); "loop": the M thin dense sub-networks one after the other; "auto": see
#: :func:`resolve_strategy`
STRATEGIES = ("auto", "stacked", "loop")

#: on the CPU, backbones with more convolutions than this (besides the stem) loop over members
DEEP_CONV_NET = 2

#: default size of a free spatial dimension in the example input of the self-check
EXAMPLE_SIZE = 32


class CompiledMembers(nn.Module):
    """Inference-only member logits of a compiled model (Masksembles: each member on its own
    channels; Packed-Ensembles: the packed network or its member networks).

    ``forward(x)``: ``(B, ...) -> (M, B, K)``, equal to ``predict_members(model, x)``.

    It holds copies of the weights taken by :func:`compile_members`; after the original
    model's weights change (more training, ``load_state_dict``), compile again.
    ``.train()`` raises: it cannot be trained.
    """

    #: predict_members and evaluate_model call it directly: it returns member logits
    returns_member_logits = True

    def __init__(
        self, networks: list[nn.Module], num_members: int, strategy: str, channels_last: bool,
        prefix_store=None,
    ) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self._prefix_store = prefix_store  # the loop's shared-prefix outputs (shared_prefix)
        self.num_members = num_members
        self.strategy = strategy
        self.channels_last = channels_last
        super().train(False)

    def train(self, mode: bool = True) -> CompiledMembers:
        if mode:
            raise RuntimeError(
                "a compiled model is inference-only (it holds copies of the weights, laid out "
                "for each member): train the original model, then call "
                "ensemblekit.compile_members(model) again"
            )
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # ``.training`` set by hand: refuse as ``.train()`` does
            self.train(True)
        check_tensor("x", x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if len(self.networks) > 1:  # one thin member each: (B, K) per member
            try:
                return torch.stack([network(x) for network in self.networks])
            finally:
                if self._prefix_store is not None:
                    self._prefix_store.outputs.clear()
        logits = self.networks[0](x)  # (B, M*K), member-major on dim 1
        # unflatten, not view: B may be 0
        return logits.unflatten(1, (self.num_members, -1)).transpose(0, 1).contiguous()

    def extra_repr(self) -> str:
        return (
            f"num_members={self.num_members}, strategy={self.strategy!r}, "
            f"channels_last={self.channels_last}"
        )


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
    backbone = model.backbone
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    on_cpu = next(model.parameters()).device.type == "cpu"
    if not on_cpu or len(convs) - 1 <= DEEP_CONV_NET:
        return "stacked"
    if shared is None:  # the layers whose input every member shares (one dry run)
        example = _example_input(model) if example_input is None else example_input
        shared = shared_input_layers(model, example[:2])
    modules = dict(backbone.named_modules())
    masks = {entry.name: entry for entry in member_channels(model)}
    shared_convs = [name for name in shared
                    if isinstance(modules[name], nn.Conv2d) and masks[name].out_masks.all()]
    return "stacked" if len(shared_convs) > 1 else "loop"


def _example_input(model: MasksemblesModel) -> torch.Tensor:
    shape = getattr(model.backbone, "input_shape", None)
    if shape is None:
        raise ValueError(
            "compile_members: the backbone has no input_shape; pass example_input=x[:2] "
            "(a batch like the ones you will predict on)"
        )
    reference = next(model.parameters())
    size = [EXAMPLE_SIZE if dim is None else dim for dim in shape]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, *size, generator=generator).to(reference)


def _relative_error(model: MasksemblesModel, compiled: nn.Module, example: torch.Tensor):
    """Shape check and relative difference of ``compiled`` against ``predict_members``."""
    with torch.no_grad():
        expected = predict_members(model, example)
        got = compiled(example)
    if got.shape != expected.shape:
        return float("inf")
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def _tolerance(model: MasksemblesModel) -> float:
    dtype = next(model.parameters()).dtype
    return 1e-4 if dtype in (torch.float32, torch.float64) else 3e-2


def _check_against_tiled(
    model: MasksemblesModel, compiled: nn.Module, example: torch.Tensor
) -> None:
    """Raise if the compiled members differ from ``predict_members`` on ``example``."""
    error = _relative_error(model, compiled, example)
    if not error <= _tolerance(model):
        raise ValueError(
            "compile_members: the compiled members do not reproduce predict_members(model, x) "
            f"(relative difference {error:.2e}); the backbone's forward must touch "
            "channels only through its conv / linear / BatchNorm / Masksembles layers and "
            "per-channel operations (see the conditions in compile_members' docstring)"
        )


def _check_example(example_input) -> None:
    """A tensor of at least one finite example, else a ValueError naming example_input."""
    check_tensor("example_input", example_input)
    if example_input.ndim == 0 or len(example_input) == 0:
        raise ValueError(
            f"example_input must hold at least one example, got shape "
            f"{tuple(example_input.shape)}"
        )
    # A NaN would fail the self-check with a message blaming the backbone.
    check_finite("example_input", example_input)


def _runs(network: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``network`` accepts ``example`` (shapes fit), without gradients."""
    try:
        with torch.no_grad():
            network(example)
    except RuntimeError:
        return False
    return True


def compile_members(
    model: MasksemblesModel,
    *,
    strategy: str = "auto",
    channels_last: bool = True,
    fold_batchnorm_into_conv: bool = True,
    example_input: torch.Tensor | None = None,
    share_prefix: bool = True,
) -> CompiledMembers:
    """An inference-only module computing a Masksembles model's member logits from each
    member's kept channels only::

        fast = ensemblekit.compile_members(model)
        logits = fast(x)    # (M, B, K), equal to predict_members(model, x)

    Each member runs its thin sub-network (weights ``W[K_out][:, K_in]`` at every layer), so M
    members cost about ``M * k^2`` of one model instead of M (k: the masks' keep fraction).

    Args:
        model: a :class:`~ensemblekit.methods.MasksemblesModel` from ``build_model``, or one
            around your own :class:`~ensemblekit.models.Backbone` that meets the conditions
            below.
        strategy: "stacked": all members at once, grouped convolutions and batched matmuls
            on ``(B, M*k, ...)`` activations; "loop": the M thin dense sub-networks one after
            the other; "auto" (default): the faster one measured for this kind of backbone and
            device (:func:`resolve_strategy`). All give the same logits.
        channels_last: run convolutions on channels-last tensors (faster on CPU, measured in
            ``benchmarks/inference.py``). Only the speed changes.
        fold_batchnorm_into_conv: fold every BatchNorm that reads only a convolution's output
            into that convolution (exact up to rounding; found from the autograd graph of one
            dry run).
        example_input: a small batch ``(b, ...)`` like the ones you will predict on, used for
            the dry run and for a self-check against ``predict_members``; default: 2 random
            examples of ``model.backbone.input_shape`` (32 for a free spatial size).
        share_prefix: run every layer before the first mask once for all members
            (:mod:`ensemblekit.compile.shared_prefix`; with ``strategy="loop"`` the first
            member computes it and the others reuse its outputs): with
            ``placement="dropout"`` N members cost about one trunk plus N thin heads. A
            backbone whose shared and member activations meet in an add compiles without
            it. Only the speed changes.

    Conditions on the backbone (every ``build_model`` backbone meets them):

    * it is a :class:`~ensemblekit.models.Backbone`, whose ``layer_widths`` names the stem
      (reads the raw input) and the head (writes the logits); its modules with parameters or
      buffers are ``nn.Conv2d`` (``groups=1``), ``nn.Linear``, BatchNorm (with running
      statistics) and Masksembles layers;
    * every activation between the stem and the head goes through the Masksembles layers of
      its width (or none: a width with no Masksembles layer keeps all its channels), and all
      Masksembles layers of one width have the same masks;
    * ``forward`` touches channels only through those layers and per-channel operations
      (activations, pooling, adds of equal widths, a channel-major ``flatten``), with no
      channel counts written in it.

    A backbone that breaks them raises a ``NotImplementedError`` naming the layer, or a
    ``ValueError`` from the self-check.

    **Packed-Ensembles** models (:mod:`ensemblekit.compile.packed`): every BatchNorm folded,
    ``strategy`` "stacked" runs the packed network as it is (grouped layers), "loop" the n
    member networks one after the other; "auto" picks the faster measured layout
    (:func:`~ensemblekit.compile.packed.resolve_packed_strategy`). ``share_prefix`` does not
    apply (members share no layer).

    **Your own network** (converted with :func:`ensemblekit.to_masksembles`; ``example_input``
    required): the members are not cut into thin sub-networks, but every layer before the first
    Masksembles layer runs once and the members fan out there
    (:class:`~ensemblekit.compile.fan_out.FanOutMembers`), where a check on ``example_input``
    shows that this is exact; otherwise (a residual add across the mask) the network runs tiled.
    The returned module's ``strategy`` says which ("fan-out" or "tiled"). **MC-Dropout** models
    (built or converted) compile the same way: the layers before the first dropout run once,
    and the members' seeded masks are those of ``predict_members``.

    The result holds copies of the weights taken now, in the model's device and dtype: call
    ``compile_members`` again after the weights change. It cannot be trained: ``.train()``
    raises. Wrap calls in ``torch.no_grad()`` (or ``torch.inference_mode()``) as for any
    inference.
    """
    if not isinstance(model, MasksemblesModel | MCDropoutModel | PackedEnsembleModel):
        raise TypeError(
            "compile_members needs a Masksembles, MC-Dropout or Packed-Ensembles model "
            "(ensemblekit.build_model(..., method='masksembles') or a converter), got "
            + type(model).__name__
        )
    strategy = check_choice("strategy", strategy, STRATEGIES)
    for name, flag in (
        ("channels_last", channels_last),
        ("fold_batchnorm_into_conv", fold_batchnorm_into_conv),
        ("share_prefix", share_prefix),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    generic = isinstance(model, MCDropoutModel) or not hasattr(model.backbone, "layer_widths")
    if example_input is not None:
        _check_example(example_input)
    elif generic and not hasattr(model.backbone, "input_shape"):
        raise ValueError(
            "compile_members of a converted network needs example_input=x[:2] (a batch like "
            "the ones you will predict on): it cannot guess your input shape")
    else:
        example_input = _example_input(model)  # raises, naming the fix, without input_shape
    if isinstance(model, PackedEnsembleModel):
        if strategy == "auto":
            strategy = resolve_packed_strategy(model)
        networks = packed_networks(model, strategy, channels_last=channels_last,
                                   fold_batchnorm_into_conv=fold_batchnorm_into_conv,
                                   example=example_input)
        compiled = CompiledMembers(networks, model.num_members, strategy, channels_last)
        _check_against_tiled(model, compiled, example_input)
        return compiled
    if generic:  # your own network, converted, or MC-Dropout: fan out at the first mask
        compiled = fan_out_members(
            model, example_input,
            lambda fast, x: _relative_error(model, fast, x) <= _tolerance(model))
        _check_against_tiled(model, compiled, example_input)
        return compiled
    masks = member_channels(model)
    # one dry run finds the shared prefix, for the strategy and for the sharing alike
    shared = shared_input_layers(model, example_input) if share_prefix or strategy == "auto" \
        else set()
    if strategy == "auto":
        strategy = resolve_strategy(model, example_input, shared=shared)
    count = model.num_members
    groups = [list(range(count))] if strategy == "stacked" else [[m] for m in range(count)]
    stacked_masks, kept = masks, set()
    if share_prefix:
        stacked_masks, kept = with_shared_prefix(masks, shared, model.backbone.head_name)
    networks = [stack_members(model.backbone, stacked_masks, members, kept=kept)
                for members in groups]
    if kept and not _runs(networks[0], example_input):
        kept = set()  # a shared and a stacked activation meet: compile without sharing
        networks = [stack_members(model.backbone, masks, members) for members in groups]
    for network in networks:
        if fold_batchnorm_into_conv:
            fold_batchnorm(network, conv_batchnorm_pairs(network, example_input))
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        if channels_last:
            network.to(memory_format=torch.channels_last)
    store = share_prefix_across(networks, kept) if strategy == "loop" and kept else None
    compiled = CompiledMembers(networks, count, strategy, channels_last, store)
    _check_against_tiled(model, compiled, example_input)
    return compiled

"""``compile_members``: one call that turns any ensemble model into fast inference-only members.

Every method's model predicts its member logits through ``predict_members`` (tiling the input,
multiplying dropped channels by zero, or looping over members). ``compile_members(model)``
returns a module computing the same ``(M, B, K)`` logits faster, by the path registered for the
model's method (:mod:`.registry`), checked against ``predict_members`` before it is returned;
a model without a registered path runs its own one-pass forward (:mod:`.fallback`).
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_choice, check_finite, check_tensor
from ..example_inputs import recorded_example
from ..methods.base import EnsembleModel, member_outputs
from ..methods.task import model_task
from .fallback import OwnForwardMembers
from .gaussian import GaussianCompiledMembers
from .inference_only import InferenceOnlyMembers
from .registry import CompileOptions, compiler_for

#: "stacked": all members at once (grouped convolutions, batched matmuls); "loop": one network
#: per member, one after the other; "auto": the faster one measured for the model's method,
#: backbone and device (:func:`~.masksembles.resolve_strategy`, :mod:`.dense`)
STRATEGIES = ("auto", "stacked", "loop")

#: on the CPU, backbones with more convolutions than this (besides the stem) loop over members
DEEP_CONV_NET = 2

#: default size of a free spatial dimension in the example input of the self-check
EXAMPLE_SIZE = 32


class CompiledMembers(InferenceOnlyMembers):
    """Inference-only member logits from dense networks: ``(B, ...) -> (M, B, K)``, equal to
    ``predict_members(model, x)``.

    ``networks``: one network per member (``strategy="loop"``, each ``(B, ...) -> (B, K)``) or
    one for all (``"stacked"``, ``(B, ...) -> (B, M*K)`` member-major on dim 1).

    It holds copies of the weights taken by :func:`compile_members`; after the original
    model's weights change (more training, ``load_state_dict``), compile again.
    ``.train()`` raises: it cannot be trained.
    """

    holds = " (they hold copies of the weights, rearranged for inference)"

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # ``.training`` set by hand: refuse as ``.train()`` does
            self.train(True)
        check_tensor("x", x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if len(self.networks) > 1:  # one network per member: (B, K) each
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


def loops_on_this_device(network: nn.Module) -> bool:
    """Whether ``strategy="auto"`` loops over members for ``network`` (a member's dense
    network, or the backbone): on the CPU, for more than :data:`DEEP_CONV_NET` convolutions
    besides the stem (measured in ``benchmarks/inference.py``; see each method's path)."""
    convs = [m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    reference = next(network.parameters(), None)
    on_cpu = reference is None or reference.device.type == "cpu"
    return on_cpu and len(convs) - 1 > DEEP_CONV_NET


def default_example(model: nn.Module) -> torch.Tensor:
    """2 random examples like the one a converter ran the model on (``model.recipe["input"]``),
    else of the model's ``input_shape`` (its backbone's; 32 for a free spatial size), else a
    ValueError asking for ``example_input``."""
    recorded = recorded_example(model)
    if recorded is not None:
        return recorded
    shape = next((getattr(m, "input_shape", None) for m in model.modules()
                  if getattr(m, "input_shape", None) is not None), None)
    if shape is None:
        raise ValueError(
            "compile_members needs example_input=x[:2] (a batch like the ones you will "
            f"predict on) for this {type(model).__name__}: its network has no input_shape and "
            "it recorded no example, so it cannot guess your input shape (a converter given "
            "example_input records it)")
    reference = next(model.parameters())
    size = [EXAMPLE_SIZE if dim is None else dim for dim in shape]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, *size, generator=generator).to(reference)


def relative_error(model: nn.Module, compiled: nn.Module, example: torch.Tensor) -> float:
    """Relative difference of ``compiled(example)`` from ``predict_members`` (inf on a shape
    mismatch), compared on the members' raw outputs (a regression model's 2*D head values)."""
    with torch.no_grad():
        expected = member_outputs(model, example)
        got = compiled(example)
    if got.shape != expected.shape:
        return float("inf")
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def tolerance(model: nn.Module) -> float:
    """The self-check's tolerance: 1e-4 in fp32 / fp64, 3e-2 in half precision."""
    dtype = next(model.parameters()).dtype
    return 1e-4 if dtype in (torch.float32, torch.float64) else 3e-2


def reproduces(model: nn.Module, compiled: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``compiled`` gives ``predict_members(model, example)`` within :func:`tolerance`."""
    return relative_error(model, compiled, example) <= tolerance(model)


def check_against_tiled(model: nn.Module, compiled: nn.Module, example: torch.Tensor) -> None:
    """Raise if the compiled members differ from ``predict_members`` on ``example``."""
    error = relative_error(model, compiled, example)
    if not error <= tolerance(model):
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


def compile_members(
    model: EnsembleModel,
    *,
    strategy: str = "auto",
    channels_last: bool = True,
    fold_batchnorm_into_conv: bool = True,
    example_input: torch.Tensor | None = None,
    share_prefix: bool = True,
) -> nn.Module:
    """An inference-only module computing the member logits of any ensemble model, faster::

        fast = ensemblekit.compile_members(model)
        logits = fast(x)    # (M, B, K), equal to predict_members(model, x)

    Every path is exact: the result is checked against ``predict_members`` on
    ``example_input`` before it is returned (relative difference <= 1e-4 in fp32), and a
    path that does not reproduce it raises ``ValueError`` (or, where a method has a slower
    exact path, takes that). What each method compiles to (``benchmarks/RESULTS.md`` has the
    speeds, ``python benchmarks/inference.py --sections methods``):

    * **Masksembles**: each member runs only the channels its masks keep, about ``M * k^2``
      of one model's work instead of M (k the keep fraction); layers before the first mask
      run once (:mod:`.masksembles`). A converted network without a channel map fans out at
      its first mask, or runs tiled where that is not exact (:mod:`.fan_out`).
    * **MC-Dropout**: the layers before the first dropout run once, then the members fan out
      with ``predict_members``' seeded masks (:mod:`.fan_out`).
    * **Single model**: its network with every BatchNorm folded into the convolution before
      it, channels-last (:mod:`.single`).
    * **Deep Ensembles**: the members' networks, BatchNorm folded into each, looped or stacked
      into one network of grouped convolutions (:mod:`.deep_ensemble`, :mod:`.dense`).
    * **BatchEnsemble**: each member as a dense network with its effective weights
      ``W * s_m r_m^T`` and bias, the shared BatchNorm folded into each member's convolution
      (exact: in eval mode it is a per-channel affine map of that convolution's output),
      looped or stacked (:mod:`.batchensemble`).
    * **Packed-Ensembles**: every BatchNorm folded; "stacked" runs the packed network as it
      is (grouped layers), "loop" the n member networks one after the other, "auto" the
      faster measured layout (:mod:`.packed`).
    * **any other** :class:`~ensemblekit.methods.EnsembleModel` (a method without a
      registered path, :mod:`.registry`): its own one-pass ``forward_members``, in eval mode
      on a copy (:class:`~.fallback.OwnForwardMembers`, ``strategy="own forward"``).

    The returned module's ``strategy`` says which path ran ("stacked", "loop", "fan-out",
    "tiled", "own forward").

    A regression model (``task="regression"``) compiles by the same paths -- they compute the
    members' raw head outputs ``(M, B, 2D)``, checked against the model's -- and the result
    returns :class:`~ensemblekit.members.GaussianMembers` as ``predict_members`` does
    (:class:`~.gaussian.GaussianCompiledMembers`).

    Args:
        model: an :class:`~ensemblekit.methods.EnsembleModel` from ``build_model`` or a
            converter.
        strategy: "stacked": all members at once, grouped convolutions and batched matmuls;
            "loop": one network per member, one after the other; "auto" (default): the faster
            one measured for this method, backbone and device. All give the same logits;
            methods with a single path (MC-Dropout, the single model) ignore it.
        channels_last: run convolutions on channels-last tensors (faster on CPU, measured in
            ``benchmarks/inference.py``). Only the speed changes.
        fold_batchnorm_into_conv: fold every BatchNorm that reads only a convolution's output
            into that convolution (exact up to rounding; found from the autograd graph of one
            dry run).
        example_input: a small batch ``(b, ...)`` like the ones you will predict on, used for
            dry runs and the self-check; default: 2 random examples of the input shape a
            converter recorded (``model.recipe["input"]``), else of the backbone's
            ``input_shape`` (32 for a free spatial size).
        share_prefix: Masksembles: run every layer before the first mask once for all members
            (:mod:`ensemblekit.compile.shared_prefix`; with ``strategy="loop"`` the first
            member computes it and the others reuse its outputs): with
            ``placement="dropout"`` N members cost about one trunk plus N thin heads. A
            backbone whose shared and member activations meet in an add compiles without
            it. Only the speed changes.

    Conditions on a Masksembles backbone cut into thin members (every ``build_model``
    backbone meets them):

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
    ``ValueError`` from the self-check. Stacking Deep Ensemble or BatchEnsemble members needs
    the same map (``layer_widths``); without it they loop.

    The result holds copies of the weights taken now, in the model's device and dtype: call
    ``compile_members`` again after the weights change. It cannot be trained: ``.train()``
    raises. Wrap calls in ``torch.no_grad()`` (or ``torch.inference_mode()``) as for any
    inference.
    """
    if not isinstance(model, EnsembleModel):
        raise TypeError(
            "compile_members needs an ensemble model from ensemblekit.build_model or an "
            f"ensemblekit converter, got {type(model).__name__}"
        )
    strategy = check_choice("strategy", strategy, STRATEGIES)
    for name, flag in (
        ("channels_last", channels_last),
        ("fold_batchnorm_into_conv", fold_batchnorm_into_conv),
        ("share_prefix", share_prefix),
    ):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    if example_input is not None:
        _check_example(example_input)
    compiler = compiler_for(model)
    if compiler is None:
        compiled = OwnForwardMembers(model)
    else:
        if example_input is None:
            example_input = default_example(model)
            _check_example(example_input)
        options = CompileOptions(strategy, channels_last, fold_batchnorm_into_conv,
                                 example_input, share_prefix)
        compiled = compiler(model, options)
        check_against_tiled(model, compiled, example_input)
    if model_task(model) == "regression":
        return GaussianCompiledMembers(compiled, model.num_outputs)
    return compiled

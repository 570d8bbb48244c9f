"""Export a model for deployment: one graph from a batch to its members' uncertainty.

::

    ensemblekit.export(model, "model.onnx", example_input=x[:2])          # ONNX
    ensemblekit.export(model, "model.pt2", x[:2], format="torch_export")   # torch.export
    ensemblekit.export(converted, "model.onnx")   # converted with example_input: its shape

The graph reads ``input`` ``(B, ...)`` (B free: the batch size is dynamic) and returns the
requested ``outputs``, in that order:

* ``"probs"``: ``(B, K)`` the mean of the members' softmax probabilities;
* ``"entropy"``: ``(B,)`` predictive entropy ``H(mean probs)`` in nats;
* ``"mutual_information"``: ``(B,)`` ``H(mean probs) - mean_m H(p_m)`` (>= 0, nats);
* ``"member_logits"``: ``(M, B, K)``, what ``predict_members`` returns.

A regression model (``task="regression"``) has its own outputs (``REGRESSION_OUTPUTS``; the
default is the first three), from its members' Gaussians, the moment-matched mixture
(:func:`ensemblekit.moment_match`):

* ``"mean"``: ``(B, D)`` the mean of the members' means;
* ``"total_variance"``: ``(B, D)`` the mixture's variance, aleatoric + epistemic;
* ``"epistemic_variance"``: ``(B, D)`` the population variance of the members' means;
* ``"aleatoric_variance"``: ``(B, D)`` the mean of the members' variances;
* ``"member_means"``, ``"member_variances"``: ``(M, B, D)``, what ``predict_members`` returns.

How the members are computed (``members="auto"``): through the model's compiled members,
:func:`ensemblekit.compile_members` (Masksembles: each member on its own channels; the single
model, Deep Ensembles and BatchEnsemble: dense member networks with BatchNorm folded; MIMO: one
single-model forward, slot weights summed, BatchNorm folded; a method
without a compiled path: its own ``forward_members``), in the standard memory layout, else --
where compiling raises -- the model's ``forward_members``. MC-Dropout is exported with M fixed
masks, the ones ``predict_members`` draws from the model's seeded generator (one mask per
member and dropout call, shared by every example, :mod:`ensemblekit.methods.seeded_dropout`),
baked into the graph as constants: the exported model predicts exactly what
``predict_members`` predicts, for any batch size, but it cannot draw new masks (export again
with another ``sampling_seed`` or ``num_samples``).

After writing, the file is read back and run on ``example_input`` (``torch_export`` always,
ONNX when ``onnxruntime`` is installed): outputs that differ from the model's by more than
1e-4 raise ``ValueError``. ONNX export needs the ``onnx`` and ``onnxscript`` packages
(``pip install ensemblekit[export]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ._validation import check_choice, check_finite, check_tensor
from .compile import compile_members
from .example_inputs import recorded_example
from .methods.base import EnsembleModel
from .methods.mc_dropout import MCDropoutModel
from .methods.seeded_dropout import seeded_mask_source
from .methods.task import gaussian_outputs, model_task
from .metrics.gaussian import _moments
from .runtime import eval_mode

FORMATS = ("onnx", "torch_export")
OUTPUTS = ("probs", "entropy", "mutual_information", "member_logits")
REGRESSION_OUTPUTS = ("mean", "total_variance", "epistemic_variance", "aleatoric_variance",
                      "member_means", "member_variances")
#: what the graph returns when ``outputs`` is left out, per task
DEFAULT_OUTPUTS = {"classification": OUTPUTS[:3], "regression": REGRESSION_OUTPUTS[:3]}
MEMBERS = ("auto", "compiled", "tiled")

#: smallest normal float32: floors probabilities before the log, so 0 log 0 = 0
_TINY = torch.finfo(torch.float32).tiny
#: largest difference (relative to the largest output) tolerated between file and model
_TOLERANCE = 1e-4


class UncertaintyOutputs(nn.Module):
    """``(B, ...) -> tuple`` of the requested outputs of ``members(x)``'s ``(M, B, K)`` logits."""

    def __init__(self, members: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.members = members
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.members(x)  # (M, B, K)
        log_probs = logits.log_softmax(-1)
        probs = log_probs.exp()
        mean = probs.mean(0)  # (B, K)
        entropy = -(mean * mean.clamp_min(_TINY).log()).sum(-1)
        expected_entropy = -(probs * log_probs).sum(-1).mean(0)
        found = {
            "probs": mean,
            "entropy": entropy,
            "mutual_information": (entropy - expected_entropy).clamp_min(0.0),
            "member_logits": logits,
        }
        return tuple(found[name] for name in self.outputs)


class GaussianOutputs(nn.Module):
    """``(B, ...) -> tuple`` of the requested outputs of a regression model's members:
    ``members(x)`` returns their raw head outputs ``(M, B, 2D)`` or ``GaussianMembers``."""

    def __init__(self, members: nn.Module, num_outputs: int, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.members = members
        self.num_outputs = num_outputs
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        members = self.members(x)
        if isinstance(members, torch.Tensor):  # raw (M, B, 2D): the tiled or frozen pass
            members = gaussian_outputs(members, self.num_outputs)
        means, variances = members
        # The unchecked moments of moment_match, which would read values on the host (not in
        # a traced graph) and compute in float64 (the graph keeps the model's dtype).
        moments = _moments(means, variances)
        found = {
            "mean": moments.mean,
            "total_variance": moments.variance,
            "epistemic_variance": moments.epistemic,
            "aleatoric_variance": moments.aleatoric,
            "member_means": means,
            "member_variances": variances,
        }
        return tuple(found[name] for name in self.outputs)


class _ForwardMembers(nn.Module):
    """``model.forward_members(x)`` as a module (the tiled pass, or a method's own)."""

    def __init__(self, model: EnsembleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_members(x, None)


class _FrozenDropoutMembers(nn.Module):
    """MC-Dropout members with fixed masks: buffers ``mask_i``, used in dropout call order."""

    def __init__(self, model: MCDropoutModel, masks: list[torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.count = len(masks)
        for index, mask in enumerate(masks):
            self.register_buffer(f"mask_{index}", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = iter([getattr(self, f"mask_{index}") for index in range(self.count)])
        return self.model.forward_members(x, None, masks=lambda layer, out: next(masks))


def _drawn_masks(model: MCDropoutModel, example: torch.Tensor) -> list[torch.Tensor]:
    """The masks ``forward_members`` draws on ``example``, in call order."""
    source = seeded_mask_source(model.num_members, model.sampling_seed, example.device)
    drawn: list[torch.Tensor] = []

    def record(layer: nn.Module, out: torch.Tensor) -> torch.Tensor:
        drawn.append(source(layer, out))
        return drawn[-1]

    with torch.no_grad():
        model.forward_members(example, None, masks=record)
    return drawn


def _members_module(model: EnsembleModel, example: torch.Tensor, members: str) -> nn.Module:
    if isinstance(model, MCDropoutModel):
        if members == "compiled":
            raise ValueError(
                "members='compiled' does not apply to MC-Dropout: its export bakes in the masks "
                "predict_members draws (members='auto'); compile_members draws them per call")
        return _FrozenDropoutMembers(model, _drawn_masks(model, example))
    if members == "tiled":
        return _ForwardMembers(model)
    try:
        # Standard layout: a graph file has no memory format, and torch.export.save cannot
        # store channels-last weights whole.
        compiled = compile_members(model, example_input=example, channels_last=False)
    except (NotImplementedError, ValueError) as error:
        if members == "compiled":
            raise ValueError(f"members='compiled': compile_members refused: {error}") from error
        return _ForwardMembers(model)
    if members == "compiled" and compiled.strategy == "own forward":
        raise ValueError(
            f"members='compiled': a {model.method!r} model has no compiled path (compile_members "
            "runs its own forward); use members='auto'")
    return compiled


def export(
    model: EnsembleModel,
    path: str | os.PathLike,
    example_input: torch.Tensor | None = None,
    *,
    format: str = "onnx",
    outputs: tuple[str, ...] | list[str] | None = None,
    members: str = "auto",
) -> Path:
    """Write one graph computing every member of ``model`` and its uncertainty to ``path``.

    Args:
        model: an :class:`~ensemblekit.methods.EnsembleModel` (``build_model`` or a converter);
            it is traced in eval mode, every module's mode restored afterwards.
        path: the file to write (``.onnx`` or ``.pt2`` by convention).
        example_input: a batch ``(b, ...)`` of at least 2 examples like the ones to predict on
            (traced with the batch dim free; the other dims are fixed to these); may be left
            out for a model converted with an ``example_input`` (2 random examples of the shape
            and dtype its recipe recorded).
        format: ``"onnx"`` (input name ``input``, output names as in ``outputs``) or
            ``"torch_export"`` (``torch.export.save``; load with ``torch.export.load(path)
            .module()``).
        outputs: which of ``"probs"``, ``"entropy"``, ``"mutual_information"``,
            ``"member_logits"`` the graph returns, in this order (default: the first three);
            for a regression model, which of ``REGRESSION_OUTPUTS`` (default: ``"mean"``,
            ``"total_variance"``, ``"epistemic_variance"``).
        members: ``"auto"`` (see the module docstring), ``"compiled"`` (fail rather than fall
            back to the model's own forward; not for MC-Dropout, whose masks are baked in) or
            ``"tiled"`` (the model's ``forward_members``).

    Returns:
        the path written.
    """
    if not isinstance(model, EnsembleModel):
        raise TypeError(
            "export needs a model from ensemblekit.build_model or an ensemblekit converter, got "
            f"{type(model).__name__}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; pass a file path such as {path / 'model.onnx'}")
    if example_input is None:
        example_input = recorded_example(model)
        if example_input is None:
            raise ValueError(
                "export needs example_input=x[:2] (a batch of at least 2 examples like the ones "
                f"to predict on): this {model.method} model records no input shape (only a "
                "converter given example_input does)"
            )
    check_tensor("example_input", example_input)
    if example_input.ndim == 0 or len(example_input) < 2:
        raise ValueError(
            f"example_input must be a batch of at least 2 examples (with 1 the tracer fixes the "
            f"batch size), got shape {tuple(example_input.shape)}"
        )
    check_finite("example_input", example_input)
    format = check_choice("format", format, FORMATS)
    members = check_choice("members", members, MEMBERS)
    regression = model_task(model) == "regression"
    names = REGRESSION_OUTPUTS if regression else OUTPUTS
    if outputs is None:
        outputs = DEFAULT_OUTPUTS[model_task(model)]
    if isinstance(outputs, str) or not isinstance(outputs, (tuple, list)) or not outputs:
        raise TypeError(f"outputs must be a non-empty tuple of output names {names}, got "
                        f"{outputs!r}")
    entry = "outputs entry (a regression model's)" if regression else "outputs entry"
    outputs = tuple(check_choice(entry, name, names) for name in outputs)
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs {outputs} names an output twice")

    with eval_mode(model):
        source = _members_module(model, example_input, members)
        graph = (GaussianOutputs(source, model.num_outputs, outputs) if regression
                 else UncertaintyOutputs(source, outputs)).eval()
        with torch.no_grad():
            expected = graph(example_input)
        batch = torch.export.Dim("batch")
        if format == "onnx":
            _write_onnx(graph, example_input, path, outputs, batch)
        else:
            program = torch.export.export(graph, (example_input,), dynamic_shapes=({0: batch},))
            torch.export.save(program, path)
    _check_file(path, format, example_input, expected, outputs)
    return path


def _write_onnx(graph: nn.Module, example: torch.Tensor, path: Path, outputs, batch) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs both; say so before it fails deep)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"format='onnx' needs the onnx and onnxscript packages ({error}); pip install "
            "onnx onnxscript, or use format='torch_export'"
        ) from error
    torch.onnx.export(
        graph,
        (example,),
        str(path),
        input_names=["input"],
        output_names=list(outputs),
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )


def _check_file(path: Path, format: str, example: torch.Tensor, expected, outputs) -> None:
    """Run the written file on ``example``; raise if it disagrees with the model."""
    if format == "torch_export":
        with torch.no_grad():
            got = torch.export.load(path).module()(example)
    else:
        try:
            import onnxruntime
        except ImportError:
            return  # nothing to run the file with; the tests run it
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": example.detach().cpu().numpy()})
        got = [torch.from_numpy(value) for value in got]
    for name, want, have in zip(outputs, expected, got, strict=True):
        want = want.detach().cpu().float()
        have = torch.as_tensor(have).detach().cpu().float()
        scale = want.abs().max().clamp_min(1.0)
        if have.shape != want.shape or not (have - want).abs().max() / scale <= _TOLERANCE:
            raise ValueError(
                f"export: the {format} file {path} computes {name!r} differently from the model "
                "(the graph could not capture some of its forward); please report it"
            )

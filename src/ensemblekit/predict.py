"""The one inference loop: the member outputs of a split.

``predict(model, split, ...)`` reads the split in order, ``batch_size`` inputs at a time --
``(images, labels)`` tensors, bare image tensors (labels None: an OOD set), a ``Dataset``
(streamed through a ``DataLoader``, never held whole) or any iterable of ``(images, labels)``
chunks (re-batched) -- normalises each batch, and returns the member logits ``(M, N, K)``
(float32, on the CPU) with the labels ``(N,)``. Around the loop:

- **modes restored**: the model runs in eval mode (``predict_members``: BatchNorm on running
  statistics; MC-Dropout keeps only its own dropout stochastic); every module's mode is put
  back afterwards;
- **seeded**: the pass runs under ``torch.manual_seed(seed)`` in a forked RNG that leaves the
  caller's generator untouched (MC-Dropout draws its masks from its own generator, seeded by
  the model, so its members are the same whatever ``seed`` and ``batch_size``);
- **streaming**: ``on_batch(logits (M, B, K), labels (B,))`` sees every batch as predicted (on
  the model's device), and ``keep=False`` stores nothing of size (M, N, K);
- **timed** (``timed=True``): the wall time of each forward alone, CUDA synchronised;
- **probes**: forward pre-hooks that capture hidden representations in the same pass
  (:class:`Probes`), returned as ``(M, N, D)`` per name.

A model from :func:`ensemblekit.build_model`, a converter or :func:`ensemblekit.compile_members`
predicts through :func:`~ensemblekit.methods.predict_members`; any other module ``(B, ...) ->
(B, K)`` is one member.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._validation import check_finite, check_int, check_seed
from .data import normalizer, rebatch
from .methods import available_methods, method_entry, model_task, predict_members
from .runtime import model_device, synchronize

Transform = Callable[[torch.Tensor], torch.Tensor]
#: ``on_batch(logits (M, B, K), labels (B,) or None)``
BatchHook = Callable[[torch.Tensor, torch.Tensor | None], None]


@dataclass(frozen=True)
class Probes:
    """Hidden representations to capture while predicting: ``{name: [module per backbone]}``.

    One module per name for a model whose members share one backbone (by default it reads a
    member-major batch: member m owns rows ``m*B:(m+1)*B``; ``members`` says otherwise), one
    per member for a model whose members are separate backbones (then ``forward`` runs them
    one by one, e.g. a Deep Ensemble's ``forward_members_loop``: a vectorised pass would
    bypass the hooks). ``reduce`` maps each captured input ``(rows, ...)`` to ``(rows, D)``.
    """

    layers: Mapping[str, Sequence[nn.Module]]
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.flatten(1)
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: ``(captured input, module) -> (M, B, ...)``: each member's share of what one shared
    #: backbone's module read (``EnsembleModel.member_features``); None: member-major rows
    members: Callable[[torch.Tensor, nn.Module], torch.Tensor] | None = None


@dataclass
class MemberOutputs:
    """What :func:`predict` returns.

    ``logits``: ``(M, N, K)`` float32 on the CPU (None with ``keep=False``); ``labels``: ``(N,)``
    int64 (None for bare images); ``features``: ``{name: (M, N, D)}`` float32 (with probes);
    ``seconds``: per batch, the forward's wall time (with ``timed``); ``sizes``: per batch, its
    number of inputs.
    """

    logits: torch.Tensor | None
    labels: torch.Tensor | None
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def predict(
    model: nn.Module,
    split,
    *,
    dataset: str | None = None,
    normalize: Transform | None = None,
    batch_size: int = 500,
    num_samples: int | None = None,
    seed: int = 0,
    keep: bool = True,
    on_batch: BatchHook | None = None,
    timed: bool = False,
    probes: Probes | None = None,
) -> MemberOutputs:
    """The member outputs of ``split`` (module docstring): ``normalize`` (or ``dataset``'s
    normalisation) applied to each [0, 1] batch; ``num_samples``: MC-Dropout's passes
    (see :func:`member_samples`)."""
    if model_task(model) == "regression":
        raise ValueError(
            "predict streams a classifier's member logits; this is a regression model: call "
            "ensemblekit.predict_members(model, x) per batch (GaussianMembers, each (M, B, D)) "
            "and ensemblekit.evaluate_regression for its metrics")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_seed(seed)
    normalize = resolve_normalizer(dataset, normalize)
    device = model_device(model)
    chunks, labels, seconds, sizes = [], [], [], []
    captured, handles = _hook(probes)
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                torch.no_grad():
            torch.manual_seed(seed)
            for images, batch_labels in batches(split, batch_size):
                inputs = images.to(device, non_blocking=True)
                inputs = normalize(inputs) if normalize is not None else inputs
                if timed:
                    synchronize(device)
                started = time.perf_counter()
                logits = _forward(model, inputs, num_samples, probes)
                if timed:
                    synchronize(device)
                    seconds.append(time.perf_counter() - started)
                sizes.append(len(images))
                if batch_labels is not None:
                    labels.append(batch_labels)
                if on_batch is not None:
                    on_batch(logits, None if batch_labels is None
                             else batch_labels.to(logits.device))
                if keep or probes is not None:
                    chunks.append(logits.float().cpu())
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    logits = torch.cat(chunks, dim=1) if chunks else None
    return MemberOutputs(
        logits=logits if keep else None,
        labels=torch.cat(labels) if labels else None,
        features=_assemble(captured, [chunk.shape[0] for chunk in chunks]),
        seconds=seconds,
        sizes=sizes,
    )


def member_samples(model: nn.Module, num_samples: int | None) -> int | None:
    """``num_samples`` for a model whose members are drawn at prediction time (its method's
    registry entry says ``stochastic``: MC-Dropout), else None (a fixed number of members)."""
    method = getattr(model, "method", None)
    if method in available_methods() and method_entry(method).stochastic:
        return num_samples
    return None


def batches(data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(images, labels)`` batches of ``data`` in order: float32 images, int64 labels (None
    for bare image tensors). Refuses integer images, float labels, non-finite pixels."""
    if isinstance(data, torch.Tensor):
        data = (data, None)
    elif isinstance(data, Dataset) and hasattr(data, "tensors") \
            and getattr(data, "transform", None) is None and len(data.tensors) == 2:
        data = data.tensors
    if isinstance(data, (tuple, list)):
        if len(data) != 2 or not isinstance(data[0], torch.Tensor) or (
                data[1] is not None and len(data[0]) != len(data[1])):
            raise ValueError("data as a pair must be (images (N, ...), labels (N,)) tensors")
        images, labels = data
        if len(images) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            yield _checked_batch(images[start:stop], None if labels is None
                                 else labels[start:stop])
        return
    if isinstance(data, Dataset):
        if hasattr(data, "__len__") and len(data) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    elif not isinstance(data, Iterable):
        raise TypeError(f"data must be tensors or a Dataset, got {type(data).__name__}")
    else:
        data = rebatch(data, batch_size)
    for images, labels in data:
        yield _checked_batch(images, labels)


def resolve_normalizer(dataset: str | None, normalize: Transform | None) -> Transform | None:
    """``normalize`` if given (it must be callable), else ``dataset``'s normalisation (None
    for point data or no dataset)."""
    if normalize is not None:
        if not callable(normalize):
            raise ValueError(f"normalize must be callable, got {type(normalize).__name__}")
        return normalize
    return None if dataset is None else normalizer(dataset)


def _forward(model: nn.Module, inputs: torch.Tensor, num_samples: int | None,
             probes: Probes | None) -> torch.Tensor:
    """Member logits ``(M, B, K)`` of one normalised batch."""
    if probes is not None and probes.forward is not None:
        model.eval()
        return probes.forward(inputs)
    if hasattr(model, "method") or getattr(model, "returns_member_logits", False):
        return predict_members(model, inputs, num_samples=num_samples)
    model.eval()
    return model(inputs).unsqueeze(0)


def _checked_batch(images: torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float32 images and int64 labels; integer images or float labels would give silently
    wrong metrics (0..255 pixels read as [0, 1] ones, labels truncated to integers)."""
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype}; "
                         "convert uint8 images with images.float() / 255")
    check_finite("images", images)
    if labels is None:
        return images.float(), None
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    return images.float(), labels.long()


def _hook(probes: Probes | None) -> tuple[dict[str, list[list]], list]:
    """Forward pre-hooks recording each probed module's input: ``{name: [rows per backbone]}``
    and the handles to remove."""
    if probes is None:
        return {}, []
    captured = {name: [[] for _ in modules] for name, modules in probes.layers.items()}
    handles = []
    for name, modules in probes.layers.items():
        for index, module in enumerate(modules):
            handles.append(module.register_forward_pre_hook(
                _recorder(captured[name][index], probes.reduce, probes.members)))
    return captured, handles


def _recorder(store: list, reduce: Callable[[torch.Tensor], torch.Tensor], members):
    """Records ``reduce`` of each input: ``(rows, D)``, or ``(M, B, D)`` split by ``members``."""
    def hook(module, inputs):
        x = inputs[0].detach()
        if members is None:
            store.append(reduce(x).float().cpu())
            return
        split = members(x, module)  # (M, B, ...)
        store.append(reduce(split.flatten(0, 1)).unflatten(0, split.shape[:2]).float().cpu())
    return hook


def _assemble(captured: dict[str, list[list]], members: list[int]) -> dict[str, torch.Tensor]:
    """``{name: (M, N, D)}`` from the recorded rows: one list per backbone (stacked), one
    stream of ``(M, B, D)`` blocks (split by ``Probes.members``), or one member-major stream
    where batch b's rows hold ``members[b]`` blocks."""
    features = {}
    for name, per_backbone in captured.items():
        if len(per_backbone) > 1:
            features[name] = torch.stack([torch.cat(rows) for rows in per_backbone])
        elif per_backbone[0] and per_backbone[0][0].ndim == 3:  # split already: (M, B, D)
            features[name] = torch.cat(per_backbone[0], dim=1)
        else:
            blocks = [rows.reshape(count, -1, rows.shape[-1])
                      for rows, count in zip(per_backbone[0], members, strict=True)]
            features[name] = torch.cat(blocks, dim=1)
    return features

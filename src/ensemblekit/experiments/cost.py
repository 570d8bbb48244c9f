"""What a model costs at inference, honestly: parameters, FLOPs per sample, and latency as a
ratio to the single model measured in the same process.

- **parameters**: every element of ``model.parameters()`` (a widened model counts its width);
- **FLOPs per sample**: :class:`torch.utils.flop_counter.FlopCounterMode` on one call of the
  model's prediction on a batch, divided by the batch size (2 FLOPs per multiply-add of the
  matmuls and convolutions; element-wise work is not counted). ``flops_per_sample`` is that of
  ``predict_members`` (Masksembles tiled: M full passes), ``inference_flops_per_sample`` that of
  the path the latency times (for Masksembles :func:`ensemblekit.compile_members`, each member
  on its own channels);
- **latency**: the inference path (``compile_members`` for a method whose registry entry says
  ``compiled_inference``, i.e. Masksembles; ``predict_members`` for the rest) on one fixed
  batch, after warm-up calls, timed in rounds that visit every candidate in turn (noise from
  other work on a shared machine hits them all alike), with enough calls that each candidate's
  timed work spans at least ``min_seconds``; the median over rounds of the mean call time.
  Milliseconds vary from machine to machine and minute to minute; the ratio to the single
  model timed in the same rounds is what compares.

  ``latency_ratio`` compares like with like: ``compile_members`` also folds BatchNorm into
  the convolutions and runs channels-last, which alone made LeNet x3 on digits about 2x faster
  than the same single network through ``predict_members`` (0.53x measured), so a compiled
  Masksembles model is divided by the single network compiled the same way (the compiled
  method with one member at the single-model end of its spectrum knob: Masksembles n=1,
  scale=1, one full mask), every other model by the single model through
  ``predict_members``. ``latency_ratio_to_single`` divides every model by the latter.

Cost does not depend on the trained weights (masks are fixed at build time, FLOPs and shapes
by the architecture), so freshly built models give the same numbers as trained ones.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .._validation import check_float, check_int, check_tensor
from ..compile import compile_members
from ..methods import available_methods, build_model, method_entry, predict_members
from ..runtime import cpu_threads, synchronize

#: The cost kinds, each a ratio to the single model's (``<kind>_ratio`` in :func:`measure_costs`).
COST_KINDS = ("latency", "params", "flops")


def count_parameters(model: nn.Module) -> int:
    """Every element of ``model.parameters()`` (a widened model counts its width)."""
    return sum(p.numel() for p in model.parameters())


def compiled_inference(model: nn.Module) -> bool:
    """Whether ``model``'s inference path is :func:`ensemblekit.compile_members` (its method's
    registry entry says ``compiled_inference``)."""
    method = getattr(model, "method", None)
    return method in available_methods() and method_entry(method).compiled_inference


def flops_per_sample(forward: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """FLOPs of ``forward(x)`` under ``torch.no_grad`` divided by the batch size ``x.shape[0]``.

    ``forward``: any callable (an ``nn.Module``, ``lambda x: predict_members(model, x)``, a
    compiled model); ``x``: a batch ``(B, ...)`` with B >= 1. A ``Linear(i, o)`` gives 2 i o.
    """
    check_tensor("x", x)
    if x.ndim == 0 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch (B, ...) with B >= 1, got shape {tuple(x.shape)}")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward(x)
    return counter.get_total_flops() / x.shape[0]


def inference_function(model: nn.Module, example: torch.Tensor, *,
                       tiled: bool = False) -> tuple[Callable, str]:
    """``(forward, name)``: how ``model`` predicts members at inference, ``x -> (M, B, K)``.

    A method with ``compiled_inference`` (Masksembles): :func:`ensemblekit.compile_members`
    (checked against ``predict_members`` on ``example[:2]`` as it builds) unless ``tiled``;
    every other model: ``predict_members``.
    """
    if compiled_inference(model) and not tiled:
        return compile_members(model, example_input=example[:2]), "compile_members"
    return (lambda x: predict_members(model, x)), "predict_members"


def interleaved_latency(
    candidates: dict[str, Callable[[], object]],
    *,
    min_seconds: float = 0.3,
    rounds: int = 5,
    warmup: int = 2,
    device: torch.device | str = "cpu",
) -> dict[str, dict]:
    """Median seconds per call of each candidate (no arguments), timed side by side.

    Each candidate is called ``warmup`` times, then once more alone to estimate its call
    time t; it gets ``ceil(min_seconds / (rounds * t))`` calls per round (at least one), so
    that its timed calls span at least ``min_seconds`` in all. Every round times each
    candidate's calls in turn; the result per candidate is ``{"seconds": median over rounds of
    the mean call time, "calls": calls timed, "timed_seconds": their total wall time}``.
    """
    min_seconds = check_float("min_seconds", min_seconds, minimum=0.0)
    rounds = check_int("rounds", rounds, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    device = torch.device(device)

    def timed(fn: Callable[[], object], calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        synchronize(device)
        return time.perf_counter() - start

    per_round = {}
    for name, fn in candidates.items():
        for _ in range(warmup):
            fn()
        estimate = max(timed(fn, 1), 1e-7)
        per_round[name] = max(1, math.ceil(min_seconds / (rounds * estimate)))
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            samples[name].append(timed(fn, per_round[name]))
    return {name: {"seconds": statistics.median(t / per_round[name] for t in times),
                   "calls": per_round[name] * rounds, "timed_seconds": sum(times)}
            for name, times in samples.items()}


def measure_costs(
    models: dict[str, nn.Module],
    example: torch.Tensor,
    *,
    reference: str,
    min_seconds: float = 0.3,
    rounds: int = 5,
    threads: int | None = None,
    tiled: tuple[str, ...] | list[str] = (),
) -> dict:
    """Parameters, FLOPs per sample and latency of every model, and their ratios to
    ``models[reference]`` (the single model), all measured here, in one process.

    Args:
        models: name -> an :class:`~ensemblekit.methods.EnsembleModel` (put in eval mode).
        example: one normalised batch ``(B, ...)`` on the models' device; every model predicts
            the same batch.
        reference: the key of the model the ratios divide by.
        min_seconds, rounds: see :func:`interleaved_latency`.
        threads: torch CPU threads while measuring (None: unchanged).
        tiled: names of compiled-inference models (Masksembles) to time through
            ``predict_members`` instead of ``compile_members`` (e.g. the same model under a
            second name, to report both).

    Returns:
        ``{"protocol": {...}, "models": {name: {"params", "flops_per_sample",
        "inference_flops_per_sample", "latency_ms_per_sample", "latency_ms_per_batch",
        "inference", "params_ratio", "flops_ratio", "inference_flops_ratio",
        "latency_ratio" (like for like, module docstring), "latency_ratio_to_single"}}}``.
    """
    unknown = sorted(set(tiled) - set(models))
    if unknown:
        raise ValueError(f"tiled names {unknown} that are not models: {', '.join(models)}")
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: "
                         f"{', '.join(models)}; pass the name of the single model")
    check_tensor("example", example)
    if example.ndim == 0 or example.shape[0] < 2:
        raise ValueError(f"example must be a batch (B, ...) with B >= 2, got shape "
                         f"{tuple(example.shape)}")
    batch = example.shape[0]
    entries, candidates = {}, {}
    with cpu_threads(threads), torch.no_grad():
        for name, model in models.items():
            model.eval()
            forward, kind = inference_function(model, example, tiled=name in tiled)
            entries[name] = {
                "params": count_parameters(model),
                "flops_per_sample": flops_per_sample(lambda x, m=model: predict_members(m, x),
                                                     example),
                "inference_flops_per_sample": flops_per_sample(forward, example),
                "inference": kind,
            }
            candidates[name] = lambda f=forward: f(example)
        compiled_single = None
        compiled = [name for name, entry in entries.items()
                    if entry["inference"] == "compile_members"]
        if compiled:
            # the single network through compile_members: one member at the single-model end
            # of the compiled method's spectrum knob (one full mask) changes nothing
            twin = build_model(**single_twin(models[reference].config,
                                             models[compiled[0]].method))
            twin = twin.to(example.device).eval()
            forward, _ = inference_function(twin, example)
            compiled_single = object()  # a key no caller's name can be
            candidates[compiled_single] = lambda f=forward: f(example)
        latency = interleaved_latency(candidates, min_seconds=min_seconds, rounds=rounds,
                                      device=example.device)
        used_threads = torch.get_num_threads()
    for name, entry in entries.items():
        entry["latency_ms_per_batch"] = latency[name]["seconds"] * 1000.0
        entry["latency_ms_per_sample"] = entry["latency_ms_per_batch"] / batch
        entry["timed_calls"] = latency[name]["calls"]
    single = entries[reference]
    single_ms = {"predict_members": single["latency_ms_per_batch"]}
    if compiled_single is not None:
        single_ms["compile_members"] = latency[compiled_single]["seconds"] * 1000.0
    for entry in entries.values():
        entry["params_ratio"] = entry["params"] / single["params"]
        entry["flops_ratio"] = entry["flops_per_sample"] / single["flops_per_sample"]
        entry["inference_flops_ratio"] = (entry["inference_flops_per_sample"]
                                          / single["inference_flops_per_sample"])
        entry["latency_ratio"] = entry["latency_ms_per_batch"] / single_ms[entry["inference"]]
        entry["latency_ratio_to_single"] = (entry["latency_ms_per_batch"]
                                            / single["latency_ms_per_batch"])
    return {
        "protocol": {
            "reference": reference, "batch": batch, "threads": used_threads,
            "device": str(example.device), "rounds": rounds, "min_seconds": min_seconds,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
            "latency": "median over rounds of the mean call time; every model timed in each "
                       "round in turn, in one process",
            "single_ms_per_batch": single_ms,
            "latency_ratio": "to the single network through the same inference path "
                             "(compile_members for Masksembles, predict_members otherwise)",
        },
        "models": entries,
    }


def single_twin(config: dict, method: str) -> dict:
    """The ``build_model`` config of the single network ``config`` as ``method`` (a method
    with compiled inference) with one member (its ``members`` global key set to 1) at the
    single-model end of its spectrum knob (1): the same network, compilable the same way."""
    entry = method_entry(method)
    options = {entry.global_keys["members"]: 1}
    if entry.spectrum_knob is not None:
        options[entry.spectrum_knob] = 1.0
    return {**config, "method": method, **options}


def parse_budget(text: str) -> dict[str, float]:
    """``"latency<=1.3x,params<=1.1x"`` -> ``{"latency": 1.3, "params": 1.1}``.

    Comma-separated ``KIND<=RATIO`` terms (the trailing ``x`` is optional), each kind of
    :data:`COST_KINDS` at most once, ratios to the single model, positive and finite. ``flops``
    is the FLOPs of the inference path (what the latency times: ``compile_members`` for
    Masksembles).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"budget must be a string such as 'latency<=1.3x,params<=1.1x', got "
                         f"{text!r}")
    budget: dict[str, float] = {}
    for term in text.split(","):
        kind, sep, limit = term.strip().partition("<=")
        kind, limit = kind.strip(), limit.strip().removesuffix("x").strip()
        try:
            ratio = float(limit) if sep else math.nan
        except ValueError:
            ratio = math.nan
        if kind not in COST_KINDS or not (math.isfinite(ratio) and ratio > 0):
            raise ValueError(
                f"budget term {term.strip()!r} of {text!r} is not KIND<=RATIO with KIND one of "
                f"{', '.join(COST_KINDS)} and RATIO > 0 (a multiple of the single model), "
                "e.g. --budget latency<=1.3x,params<=1.1x")
        if kind in budget:
            raise ValueError(f"budget {text!r} limits {kind} twice; give each kind once")
        budget[kind] = ratio
    return budget


#: The cost entry (of :func:`measure_costs`) that each budget kind limits.
BUDGET_ENTRIES = {"latency": "latency_ratio", "params": "params_ratio",
                  "flops": "inference_flops_ratio"}


def within_budget(cost: dict, budget: dict[str, float]) -> bool:
    """Whether a model's cost entry (of :func:`measure_costs`) meets every limit of
    ``budget`` (of :func:`parse_budget`)."""
    return all(cost[BUDGET_ENTRIES[kind]] <= limit for kind, limit in budget.items())

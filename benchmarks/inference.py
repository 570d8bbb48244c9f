"""M-member inference, side by side: Masksembles tiled (``predict_members``) vs
``compile_members`` vs a deep ensemble vs the single model.

LeNet (1x28x28) and ResNet-20 (3x32x32) at M = 4 members, scale 2 and 3, batch 256, fp32,
under ``torch.no_grad``. Every candidate is timed in one process, interleaved round by round
(medians), so compare the ratios, not the milliseconds. Before timing, each compiled model is
checked against the tiled one on the benchmark batch.

A second section times the shared prefix: Masksembles with ``placement="dropout"`` (masks only
where the classic architecture puts dropout: LeNet's fully connected layers, ResNet-20's last
stage), where every layer before the first mask runs once for all members.

A third, ``methods``, takes a model of every method through ``compile_members`` (its default,
``strategy="auto"``, and the other strategies where a method has two) beside the method's own
``predict_members`` (Deep Ensembles: its CPU loop and its vmap), each compiled model checked
against ``predict_members`` on the benchmark batch first.

    python benchmarks/inference.py [--backbones lenet resnet20] [--rounds 7] [--device cuda]
        [--sections masks shared-prefix methods]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
from collections.abc import Callable

import torch

from _timing import interleaved_medians, machine_line, median_ms
from ensemblekit.compile import compile_members, resolve_strategy
from ensemblekit.methods import build_model, predict_members
from methods import synchronised

MEMBERS = 4
SCALES = (2.0, 3.0)
#: backbone -> (in_channels, image size, build options)
BACKBONES = {
    "lenet": (1, 28, {"input_size": 28}),
    "resnet20": (3, 32, {}),
}
#: candidate kinds; the masksembles ones are measured at every scale
SHARED_KINDS = (
    "single",
    "deep ensemble (loop)",
    "deep ensemble (vmap)",
    "deep ensemble (loop, NHWC)",
)
SCALED_KINDS = (
    "tiled",
    "tiled (NHWC)",
    "compile_members (stacked)",
    "compile_members (loop)",
)


def candidate_names(scales=SCALES) -> list[tuple[str, float | None]]:
    """Every (kind, scale) measured for one backbone; scale is None for the shared kinds."""
    names = [(kind, None) for kind in SHARED_KINDS]
    return names + [(kind, scale) for scale in scales for kind in SCALED_KINDS]


def label(kind: str, scale: float | None) -> str:
    return kind if scale is None else f"masksembles s={scale:g}: {kind}"


def benchmark_input(backbone: str, batch: int, device: torch.device) -> torch.Tensor:
    in_channels, size, _ = BACKBONES[backbone]
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, in_channels, size, size, generator=generator).to(device)


def channels_last(model: torch.nn.Module, x: torch.Tensor):
    """The model and input in channels-last (NHWC) memory format, for convolution speed."""
    return copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(
        memory_format=torch.channels_last
    )


def make_candidate(
    backbone: str, kind: str, scale: float | None, x: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """Build one candidate's model on ``x.device``; return ``predict() -> (M, B, K)`` logits
    (``(1, B, K)`` for the single model)."""
    in_channels, _, options = BACKBONES[backbone]

    def build(method: str, **method_options):
        model = build_model(backbone, method, 10, in_channels, seed=0, **options, **method_options)
        return model.to(x.device).eval()

    if kind == "single":
        model = build("single")
        return lambda: predict_members(model, x)
    if kind.startswith("deep ensemble"):
        mode = "vmap" if "vmap" in kind else "loop"
        model = build("deep_ensemble", n=MEMBERS, inference=mode)
        if "NHWC" in kind:
            model, nhwc = channels_last(model, x)
            return lambda: predict_members(model, nhwc)
        return lambda: predict_members(model, x)
    model = build("masksembles", n=MEMBERS, scale=scale)
    if kind == "tiled":
        return lambda: predict_members(model, x)
    if kind == "tiled (NHWC)":
        model, nhwc = channels_last(model, x)
        return lambda: predict_members(model, nhwc)
    strategy = "loop" if "loop" in kind else "stacked"
    fast = compile_members(model, strategy=strategy, example_input=x[:2])
    with torch.no_grad():
        expected = predict_members(model, x)
        error = float((fast(x) - expected).abs().max() / expected.abs().max())
    if not error <= 1e-5:
        raise AssertionError(f"{backbone} {kind} s={scale}: relative difference {error:.2e}")
    return lambda: fast(x)


def bench_backbone(backbone: str, batch: int, rounds: int, device: torch.device) -> None:
    in_channels, _, options = BACKBONES[backbone]
    x = benchmark_input(backbone, batch, device)
    candidates = {}
    for kind, scale in candidate_names():
        predict = make_candidate(backbone, kind, scale, x)
        candidates[label(kind, scale)] = synchronised(predict, device)
    with torch.no_grad():
        # Repeat fast calls within a round so each sample spans ~0.2 s of the slowest one.
        slowest = max(median_ms(fn, repeats=1, warmup=1) for fn in candidates.values())
        per_round = max(1, math.ceil(200.0 / slowest))
        times = interleaved_medians(candidates, rounds=rounds, per_round=per_round, warmup=2)
    single = times["single"]
    auto = resolve_strategy(build_model(backbone, "masksembles", 10, in_channels, **options))
    print(f"\n## {backbone}, M={MEMBERS}, batch {batch}, fp32, {device.type}, {rounds} rounds")
    print(f"(compile_members' default strategy='auto' picks {auto!r} here)")
    print("\n| candidate | median ms | x single | tiled / candidate |")
    print("|---|---:|---:|---:|")
    for kind, scale in candidate_names():
        name = label(kind, scale)
        tiled = times[label("tiled", scale)] if scale is not None else None
        speedup = f"{tiled / times[name]:.2f}" if tiled is not None else "-"
        print(f"| {name} | {times[name]:.1f} | {times[name] / single:.2f} | {speedup} |")


#: the shared-prefix section: (label, compile_members options or None for the tiled pass)
PREFIX_KINDS = (
    ("tiled", None),
    ("compile_members (stacked, shared prefix)", {"strategy": "stacked"}),
    ("compile_members (stacked, no sharing)", {"strategy": "stacked", "share_prefix": False}),
    ("compile_members (loop, shared prefix)", {"strategy": "loop"}),
    ("compile_members (loop, no sharing)", {"strategy": "loop", "share_prefix": False}),
)


def bench_shared_prefix(backbone: str, batch: int, rounds: int, device: torch.device) -> None:
    """Single model vs Masksembles ``placement="dropout"`` (M=4, scale 2) tiled and compiled."""
    in_channels, _, options = BACKBONES[backbone]
    x = benchmark_input(backbone, batch, device)
    single = build_model(backbone, "single", 10, in_channels, seed=0, **options).to(device)
    model = build_model(backbone, "masksembles", 10, in_channels, seed=0, n=MEMBERS, scale=2.0,
                        placement="dropout", **options).to(device).eval()
    candidates = {"single": synchronised(lambda: predict_members(single, x), device)}
    with torch.no_grad():
        expected = predict_members(model, x)
    for name, compile_options in PREFIX_KINDS:
        if compile_options is None:
            candidates[name] = synchronised(lambda: predict_members(model, x), device)
            continue
        fast = compile_members(model, example_input=x[:2], **compile_options)
        with torch.no_grad():
            error = float((fast(x) - expected).abs().max() / expected.abs().max())
        if not error <= 1e-5:
            raise AssertionError(f"{backbone} {name}: relative difference {error:.2e}")
        candidates[name] = synchronised(lambda fast=fast: fast(x), device)
    with torch.no_grad():
        slowest = max(median_ms(fn, repeats=1, warmup=1) for fn in candidates.values())
        per_round = max(1, math.ceil(200.0 / slowest))
        times = interleaved_medians(candidates, rounds=rounds, per_round=per_round, warmup=2)
    print(f"\n## shared prefix: {backbone}, masksembles placement='dropout', M={MEMBERS}, "
          f"scale 2, batch {batch}, fp32, {device.type}, {rounds} rounds")
    auto = resolve_strategy(model, x[:2])
    print(f"(compile_members' default strategy='auto' picks {auto!r} here)")
    print("\n| candidate | median ms | x single | tiled / candidate |")
    print("|---|---:|---:|---:|")
    for name, value in times.items():
        print(f"| {name} | {value:.1f} | {value / times['single']:.2f} | "
              f"{times['tiled'] / value:.2f} |")


#: the methods section: method -> build options (M = 4; the masking methods on the classic
#: dropout positions, the placement the tune grid measured better)
METHOD_OPTIONS = {
    "single": {},
    "mc_dropout": {"n": MEMBERS, "p": 0.1, "placement": "dropout"},
    "masksembles": {"n": MEMBERS, "scale": 2.0, "placement": "dropout"},
    "batchensemble": {"n": MEMBERS},
    "deep_ensemble": {"n": MEMBERS},
}
#: the strategies compile_members can take for a method beside its default (each timed once:
#: the one the default picks is not timed again) and other predict_members modes
METHOD_VARIANTS = {
    "masksembles": ["loop", "stacked"],
    "batchensemble": ["loop", "stacked"],
    "deep_ensemble": ["loop", "stacked", "vmap"],
}


def method_candidates(backbone: str, x: torch.Tensor) -> dict[tuple[str, str], Callable]:
    """``{(method, path): predict}`` for every method: ``predict_members``, ``compile_members``
    (default and the other strategies), each compiled one checked against ``predict_members``
    on ``x``."""
    in_channels, _, options = BACKBONES[backbone]
    candidates = {}
    for method, method_options in METHOD_OPTIONS.items():
        model = build_model(backbone, method, 10, in_channels, seed=0, **options,
                            **method_options).to(x.device).eval()
        candidates[(method, "predict_members")] = lambda m=model: predict_members(m, x)
        if "vmap" in METHOD_VARIANTS.get(method, []):
            twin = copy.deepcopy(model)
            twin.inference = "vmap"
            candidates[(method, "predict_members (vmap)")] = lambda m=twin: predict_members(m, x)
        with torch.no_grad():
            expected = predict_members(model, x)
        default = None
        for strategy in ["auto", *METHOD_VARIANTS.get(method, [])]:
            if strategy == "vmap" or strategy == default:
                continue
            fast = compile_members(model, example_input=x[:2], strategy=strategy)
            with torch.no_grad():
                error = float((fast(x) - expected).abs().max() / expected.abs().max())
            if not error <= 1e-5:
                raise AssertionError(f"{backbone} {method} {strategy}: relative difference "
                                     f"{error:.2e}")
            kind = "compiled" if fast.strategy != "own forward" else "fallback"
            note = ", default" if strategy == "auto" else ""
            default = fast.strategy if strategy == "auto" else default
            candidates[(method, f"compile_members ({kind}: {fast.strategy}{note})")] = \
                lambda f=fast: f(x)
    return candidates


def bench_methods(backbone: str, batch: int, rounds: int, device: torch.device) -> None:
    """Every method: compile_members (default and variants) vs its own predict_members."""
    x = benchmark_input(backbone, batch, device)
    candidates = {key: synchronised(fn, device)
                  for key, fn in method_candidates(backbone, x).items()}
    with torch.no_grad():
        slowest = max(median_ms(fn, repeats=1, warmup=1) for fn in candidates.values())
        per_round = max(1, math.ceil(200.0 / slowest))
        times = interleaved_medians(candidates, rounds=rounds, per_round=per_round, warmup=2)
    single = times[("single", "predict_members")]
    print(f"\n## every method through compile_members: {backbone}, M={MEMBERS}, batch {batch}, "
          f"fp32, {device.type}, {rounds} rounds")
    print("\n| method | path | median ms | x own predict_members | x single predict_members |")
    print("|---|---|---:|---:|---:|")
    for (method, path), value in times.items():
        own = times[(method, "predict_members")]
        print(f"| {method} | {path} | {value:.1f} | {value / own:.2f} | {value / single:.2f} |")


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, shared by the benchmark scripts."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")


def start(args: argparse.Namespace, script: str) -> torch.device:
    """Apply ``--threads``; print where the numbers come from; return the device."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"# benchmarks/{script} on {machine_line()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    return torch.device(args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sections", nargs="+", choices=("masks", "shared-prefix", "methods"),
                        default=["masks", "shared-prefix", "methods"])
    add_machine_arguments(parser)
    args = parser.parse_args()
    device = start(args, "inference.py")
    for backbone in args.backbones:
        if "masks" in args.sections:
            bench_backbone(backbone, args.batch, args.rounds, device)
        if "shared-prefix" in args.sections:
            bench_shared_prefix(backbone, args.batch, args.rounds, device)
        if "methods" in args.sections:
            bench_methods(backbone, args.batch, args.rounds, device)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""The cheap ensembles side by side: each method at M = 4 against the single model, and our
Packed-Ensembles layers against TorchUncertainty's, all measured in one process.

Sections (``--sections``):

* ``methods``: per backbone (LeNet 1x28x28, ResNet-20 3x32x32), every method of ``METHODS``
  (add a row there for a new method): parameters, FLOPs per sample and latency of its
  inference path (``predict_members``, and for a method whose registry entry says it infers
  through ``compile_members``, each compiled layout too), timed interleaved round by round
  (medians), as ratios to the single model through ``predict_members`` and to the single
  network compiled the same way (BatchNorm folded, channels-last: Packed-Ensembles with
  n = alpha = gamma = 1); our packed model once more with contiguous conv weights (what
  storing them channels-last gains); TorchUncertainty's packed ResNet-20 when installed;
* ``memory``: peak RSS of one prediction per candidate, each in a fresh subprocess (the method
  of ``benchmarks/memory.py``);
* ``layers``: our ``PackedConv2d`` / ``PackedLinear`` against TorchUncertainty's on the same
  shapes (ResNet-20's and LeNet's at alpha = 2, M = 4, gamma = 1), forward and forward +
  backward;
* ``per-layer``: where the time goes in ResNet-20: self CPU time per operator (convolution,
  BatchNorm, ReLU, adds; ``torch.profiler``) of the single model, the packed model and both
  compiled, then every convolution alone, timed on its own input, summed per stage.

CPU fp32, batch 256, one thread by default. Compare the ratios, not the milliseconds.

    python benchmarks/cheap_ensembles.py [--sections methods memory layers per-layer]
        [--backbones lenet resnet20] [--rounds 7] [--threads 1]

TorchUncertainty rows need the ``peers`` extra (``pip install torch-uncertainty lightning
rich``); without it they are skipped with a printed reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from _timing import interleaved_medians, machine_line
from ensemblekit.compile import compile_members
from ensemblekit.experiments.cost import flops_per_sample
from ensemblekit.layers.packed import PackedConv2d, PackedLinear
from ensemblekit.methods import build_model, method_entry, predict_members
from memory import status_kib

MEMBERS = 4
#: row name -> (method, build options); a new method adds its row here
METHODS = {
    "single": ("single", {}),
    "mc_dropout": ("mc_dropout", {"n": MEMBERS, "p": 0.1}),
    "masksembles": ("masksembles", {"n": MEMBERS, "scale": 2.0}),
    "batchensemble": ("batchensemble", {"n": MEMBERS}),
    "packed_ensemble": ("packed_ensemble", {"n": MEMBERS, "alpha": 2.0, "gamma": 1}),
    "packed_ensemble (gamma 2)": ("packed_ensemble", {"n": MEMBERS, "alpha": 2.0, "gamma": 2}),
    "mimo": ("mimo", {"n": MEMBERS}),
    "deep_ensemble": ("deep_ensemble", {"n": MEMBERS}),
}
#: the single network compiled as a compiled method is (BatchNorm folded, channels-last)
COMPILED_SINGLE = ("packed_ensemble", {"n": 1, "alpha": 1.0, "gamma": 1})
#: backbone -> (in_channels, image size, build options)
BACKBONES = {"lenet": (1, 28, {"input_size": 28}), "resnet20": (3, 32, {})}
PEER_ROWS = ("TorchUncertainty packed ResNet-20", "TorchUncertainty ResNet-20")
COMPILED = "single (compiled: BN folded, NHWC)"
NCHW = "packed_ensemble, contiguous (NCHW) conv weights"


def peer_reason() -> str | None:
    """Why TorchUncertainty rows cannot run here, or None when they can."""
    try:
        import torch_uncertainty  # noqa: F401  (optional peer)
    except ImportError as error:
        return f"torch-uncertainty is not installed ({error}); pip install torch-uncertainty " \
               "lightning rich"
    return None


def benchmark_input(backbone: str, batch: int) -> torch.Tensor:
    in_channels, size, _ = BACKBONES[backbone]
    return torch.randn(batch, in_channels, size, size, generator=torch.Generator().manual_seed(0))


def build(backbone: str, method: str, options: dict) -> nn.Module:
    in_channels, _, extra = BACKBONES[backbone]
    return build_model(backbone, method, 10, in_channels, seed=0, **extra, **options).eval()


def peer_model(row: str) -> nn.Module:
    """TorchUncertainty's packed (M=4, alpha=2, gamma=1) or plain CIFAR ResNet-20."""
    from torch_uncertainty.models.classification.resnet import packed_resnet, resnet

    if row == PEER_ROWS[0]:
        return packed_resnet(3, 10, 20, MEMBERS, 2.0, 1, style="cifar").eval()
    return resnet(3, 10, 20, style="cifar").eval()


def candidates(backbone: str, x: torch.Tensor) -> dict[str, object]:
    """name -> a function building ``(inference callable x -> logits, model whose parameters
    count, inference path)``; nothing is built until it is called."""
    found: dict[str, object] = {}
    for row, (method, options) in METHODS.items():
        found[row] = lambda method=method, options=options: _predicting(backbone, method, options)
        if method_entry(method).compiled_inference:  # both layouts: "auto" picks one
            for strategy in ("stacked", "loop"):
                found[f"{row} (compiled, {strategy})"] = (
                    lambda method=method, options=options, strategy=strategy:
                    _compiled(backbone, method, options, x, strategy))
    found[NCHW] = lambda: _predicting(backbone, *METHODS["packed_ensemble"],
                                      memory_format=torch.contiguous_format)
    found[COMPILED] = lambda: _compiled(backbone, *COMPILED_SINGLE, x, strategy="stacked")
    if backbone == "resnet20" and peer_reason() is None:
        for row in PEER_ROWS:
            found[row] = lambda row=row: (peer_model(row), peer_model(row), "forward")
    return found


def _predicting(backbone: str, method: str, options: dict, memory_format=None):
    model = build(backbone, method, options)
    if memory_format is not None:  # PackedConv2d keeps channels-last weights; undo it
        model.to(memory_format=memory_format)
    return (lambda inputs: predict_members(model, inputs)), model, "predict_members"


def _compiled(backbone: str, method: str, options: dict, x: torch.Tensor, strategy="auto"):
    model = build(backbone, method, options)
    compiled = compile_members(model, strategy=strategy, example_input=x[:2])
    return compiled, model, f"compile_members ({compiled.strategy})"


def methods_section(args) -> None:
    reason = peer_reason()
    if reason:
        print(f"\nTorchUncertainty rows skipped: {reason}")
    for backbone in args.backbones:
        x = benchmark_input(backbone, args.batch)
        built = {name: make() for name, make in candidates(backbone, x).items()}
        with torch.no_grad():
            flops = {name: flops_per_sample(fn, x) for name, (fn, _, _) in built.items()}
            ms = interleaved_medians({name: (lambda f=fn, x=x: f(x)) for name, (fn, _, _) in
                                      built.items()}, rounds=args.rounds, warmup=2)
        params = {name: sum(p.numel() for p in model.parameters())
                  for name, (_, model, _) in built.items()}
        print(f"\n### {backbone} ({'x'.join(map(str, x.shape[1:]))}), M = {MEMBERS}, "
              f"batch {args.batch}\n")
        print("| candidate | inference | params | x single | FLOPs / sample | x single | "
              "latency ms | x single | x single compiled |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, (_, _, how) in built.items():
            print(f"| {name} | {how} | {params[name]:,} | "
                  f"{params[name] / params['single']:.2f} | {flops[name]:,.0f} | "
                  f"{flops[name] / flops['single']:.2f} | {ms[name]:.1f} | "
                  f"{ms[name] / ms['single']:.2f} | {ms[name] / ms[COMPILED]:.2f} |")


def memory_child(backbone: str, name: str, batch: int) -> dict:
    """In the subprocess: the resident memory after building ``name`` and its peak over one
    prediction, in MiB (``benchmarks/memory.py``'s method)."""
    start = status_kib("VmRSS")
    x = benchmark_input(backbone, batch)
    fn, _, _ = candidates(backbone, x)[name]()
    with torch.no_grad():
        fn(x)
        before = status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM to the current RSS
        fn(x)
        peak = status_kib("VmHWM")
    return {"resident": (before - start) / 1024, "peak": (peak - before) / 1024}


def memory_section(args) -> None:
    print("\nPeak RSS over one prediction above the RSS before it, fresh subprocess each "
          "(glibc mmap threshold 64 KiB so freed tensors leave the RSS)")
    for backbone in args.backbones:
        names = list(candidates(backbone, benchmark_input(backbone, 2)))
        results = {}
        for name in names:
            command = [sys.executable, __file__, "--child", backbone, name, "--batch",
                       str(args.batch), "--threads", str(args.threads)]
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\n### {backbone}, batch {args.batch}\n")
        print("| candidate | inference peak MiB | x single | resident after build MiB |")
        print("|---|---:|---:|---:|")
        for name, result in results.items():
            print(f"| {name} | {result['peak']:.1f} | "
                  f"{result['peak'] / results['single']['peak']:.2f} | "
                  f"{result['resident']:.1f} |")


#: (label, base in, base out, spatial size or None for a linear layer)
LAYER_SHAPES = [
    ("ResNet-20 stage 1 conv 3x3", 16, 16, 32), ("ResNet-20 stage 2 conv 3x3", 32, 32, 16),
    ("ResNet-20 stage 3 conv 3x3", 64, 64, 8), ("LeNet conv2 5x5", 6, 16, 28),
    ("LeNet fc1", 16 * 49, 120, None), ("LeNet fc2", 120, 84, None),
]


def layer_pair(base_in: int, base_out: int, size: int | None, implementation: str):
    """(ours, TorchUncertainty's) at alpha=2, M=4, gamma=1 with the same weights."""
    from torch_uncertainty.layers import PackedConv2d as PeerConv
    from torch_uncertainty.layers import PackedLinear as PeerLinear

    width_in, width_out = 2 * base_in, 2 * base_out
    if size is None:
        ours = PackedLinear(width_in, width_out, MEMBERS)
        peer = PeerLinear(base_in, base_out, 2.0, MEMBERS, implementation=implementation)
        with torch.no_grad():
            peer.weight.copy_(ours.weight.view(peer.weight.shape))
            peer.bias.copy_(ours.bias)
        return ours, peer
    kernel = 5 if base_in == 6 else 3
    ours = PackedConv2d(width_in, width_out, kernel, MEMBERS, padding=kernel // 2)
    peer = PeerConv(base_in, base_out, kernel, 2.0, MEMBERS, padding=kernel // 2)
    with torch.no_grad():
        peer.conv.weight.copy_(ours.weight)
        peer.conv.bias.copy_(ours.bias)
    return ours, peer


def layers_section(args) -> None:
    reason = peer_reason()
    if reason:
        print(f"\nlayers section skipped: {reason}")
        return
    print("\nOurs vs TorchUncertainty, alpha = 2, M = 4, gamma = 1, the same weights, the same "
          f"input (batch {args.batch}; a convolution's in the standard NCHW layout and in "
          "channels-last, the layout our packed convolutions hand the next layer); forward "
          "under no_grad, and forward + backward of the output's sum\n")
    print("| layer | input | TU implementation | ours fwd ms | TU fwd ms | ours / TU | "
          "ours fwd+bwd ms | TU fwd+bwd ms | ours / TU |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for label, base_in, base_out, size in LAYER_SHAPES:
        layouts = (torch.contiguous_format, torch.channels_last) if size else (None,)
        for implementation in (("conv2d",) if size else ("einsum", "conv1d")):
            ours, peer = layer_pair(base_in, base_out, size, implementation)
            for layout in layouts:
                shape = (args.batch, 2 * base_in) + ((size, size) if size else ())
                x = torch.randn(shape)
                if layout is not None:
                    x = x.contiguous(memory_format=layout)
                with torch.no_grad():
                    torch.testing.assert_close(ours(x), peer(x), rtol=1e-4, atol=1e-4)
                ms = interleaved_medians(
                    {"ours": _forward(ours, x), "peer": _forward(peer, x),
                     "ours bwd": _backward(ours, x), "peer bwd": _backward(peer, x)},
                    rounds=args.rounds, warmup=2)
                where = {None: "-", torch.contiguous_format: "NCHW",
                         torch.channels_last: "NHWC"}[layout]
                print(f"| {label} | {where} | {implementation} | {ms['ours']:.2f} | "
                      f"{ms['peer']:.2f} | {ms['ours'] / ms['peer']:.2f} | "
                      f"{ms['ours bwd']:.2f} | {ms['peer bwd']:.2f} | "
                      f"{ms['ours bwd'] / ms['peer bwd']:.2f} |")


def _forward(layer: nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            layer(x)
    return run


def _backward(layer: nn.Module, x: torch.Tensor):
    x = x.detach().requires_grad_()
    return lambda: layer(x).sum().backward()


def conv_inputs(network: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Conv2d, torch.Tensor]]:
    """Every convolution of ``network`` with the input it reads on ``x``."""
    seen = []
    hooks = [module.register_forward_hook(
        lambda m, inputs, output, name=name: seen.append((name, m, inputs[0])))
        for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    with torch.no_grad():
        network(x)
    for hook in hooks:
        hook.remove()
    return seen


def stage(name: str) -> str:
    if name.startswith("stem"):
        return "stem"
    block = int(name.split(".")[1])
    return f"stage {block // 3 + 1}" + (" (shortcut)" if "shortcut" in name else "")


def per_layer_section(args) -> None:
    x = benchmark_input("resnet20", args.batch)
    single = build("resnet20", "single", {})
    packed = build("resnet20", "packed_ensemble", {"n": MEMBERS, "alpha": 2.0, "gamma": 1})
    compiled = compile_members(packed, strategy="loop", example_input=x[:2])
    single_compiled = _compiled("resnet20", *COMPILED_SINGLE, x, strategy="stacked")[0]
    runs = {"single": lambda: predict_members(single, x),
            "packed": lambda: predict_members(packed, x), "packed compiled (loop)": lambda:
            compiled(x), "single compiled": lambda: single_compiled(x)}
    with torch.no_grad():
        ops = op_medians(runs, rounds=args.rounds)
    kinds = sorted({kind for per_op in ops.values() for kind in per_op},
                   key=lambda kind: -ops["packed"].get(kind, 0.0))
    print(f"\nResNet-20, batch {args.batch}: self CPU ms per call by operator "
          "(torch.profiler, median over rounds, candidates interleaved)\n")
    print("| operator | " + " | ".join(runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for kind in [*kinds[:6], "all"]:
        cells = [sum(per_op.values()) if kind == "all" else per_op.get(kind, 0.0)
                 for per_op in ops.values()]
        print(f"| {kind} | " + " | ".join(f"{cell:.1f}" for cell in cells) + " |")
    conv_stages(args, x, single, packed, compiled)


#: profiler event names -> what they are
OPERATORS = {"aten::mkldnn_convolution": "convolution", "aten::native_batch_norm": "BatchNorm",
             "aten::clamp_min": "ReLU", "aten::add": "residual add",
             "aten::addmm": "linear", "aten::bmm": "linear", "aten::baddbmm": "linear"}


def op_medians(runs: dict, *, rounds: int) -> dict[str, dict[str, float]]:
    """candidate -> {operator kind: median self CPU ms of one call}, profiled round by round."""
    from torch.profiler import ProfilerActivity, profile

    samples = {name: defaultdict(list) for name in runs}
    for fn in runs.values():
        fn()
    for _ in range(rounds):
        for name, fn in runs.items():
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                fn()
            per_kind = defaultdict(float)
            for event in profiler.key_averages():
                per_kind[OPERATORS.get(event.key, "other")] += event.self_cpu_time_total / 1e3
            for kind, value in per_kind.items():
                samples[name][kind].append(value)
    return {name: {kind: sorted(values)[len(values) // 2] for kind, values in per.items()}
            for name, per in samples.items()}


def conv_stages(args, x: torch.Tensor, single, packed, compiled) -> None:
    """The convolutions alone, per stage, each timed on its own input."""
    nets = {"single": single.backbone, "packed": packed.backbone,
            "one compiled member x4": compiled.networks[0]}
    timers = {}
    for label, network in nets.items():
        member = label.startswith("one")
        inputs = x.contiguous(memory_format=torch.channels_last) if member else x
        for name, conv, inp in conv_inputs(network, inputs):
            timers[(label, stage(name), name)] = (
                lambda c=conv, i=inp, r=MEMBERS if member else 1: [
                    F.conv2d(i, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
                    for _ in range(r)])
    with torch.no_grad():
        ms = interleaved_medians(timers, rounds=args.rounds, warmup=1)
    totals = defaultdict(float)
    for (label, where, _), value in ms.items():
        totals[(label, where)] += value
    print(f"\nResNet-20 convolutions alone, batch {args.batch}: each stage's convolutions timed "
          "one by one on their own inputs, summed (medians, ms; the compiled member's x4, "
          "channels-last, BatchNorm folded)\n")
    print("| stage | " + " | ".join(nets) + " | packed / single | compiled / single |")
    print("|---|" + "---:|" * (len(nets) + 2))
    for where in [*dict.fromkeys(where for _, where, _ in timers), "all"]:
        row = [sum(v for (lab, w), v in totals.items() if lab == label and where in (w, "all"))
               for label in nets]
        print(f"| {where} | " + " | ".join(f"{v:.1f}" for v in row)
              + f" | {row[1] / row[0]:.2f} | {row[2] / row[0]:.2f} |")


SECTIONS = {"methods": methods_section, "memory": memory_section, "layers": layers_section,
            "per-layer": per_layer_section}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES),
                        default=list(BACKBONES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("BACKBONE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(memory_child(*args.child, args.batch)))
        return
    print(f"# benchmarks/cheap_ensembles.py on {machine_line()}, fp32, {args.rounds} rounds")
    for section in args.sections:
        SECTIONS[section](args)


if __name__ == "__main__":
    main()
